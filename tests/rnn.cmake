# Recurrent net tests (engine/rnn.c): the model learns the chars, deterministic
# runs repeat bitwise on ref and blas, blas within a tolerance of ref,
# canonical mode bitwise across backends and threads, save → restore →
# continue, fast mode's drift named at a backward reduction, gradients against
# finite differences, config validation and the chars corpus.
sb_add_test_exe(test_rnn
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_rnn.c
  LIBS sb_engine
  CASES
    rnn_should_learn_the_chars
    rnn_deterministic_runs_should_be_bitwise_equal_on_ref_and_blas
    rnn_blas_should_stay_within_a_tolerance_of_ref
    rnn_canonical_mode_should_give_the_same_bits_on_ref_and_blas_for_1_2_3_threads
    rnn_save_restore_continue_should_equal_an_uninterrupted_run
    rnn_fast_mode_with_perturb_should_differ_and_name_a_backward_reduction
    rnn_gradients_should_match_finite_differences_of_the_loss
    rnn_config_validation_should_name_the_field
    chars_corpus_should_be_reproducible_and_its_windows_overlap_by_one_token)

# PyTorch parity of the recurrent net (tests/parity_rnn.py): with Debian's
# /usr/bin/python3 (python3-torch, python3-numpy), never SB_PYTHON — see
# tests/parity.cmake. A missing torch fails the tests; it does not skip them.
find_program(SB_SYSTEM_PYTHON python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT SB_SYSTEM_PYTHON)
  set(SB_SYSTEM_PYTHON /usr/bin/python3)
endif()
foreach(c
    rnn_with_sgd_momentum_should_match_pytorch_losses_gradients_and_weights
    rnn_with_adamw_should_match_pytorch_losses_gradients_and_weights
    rnn_parity_check_should_fail_when_pytorch_uses_a_learning_rate_0_1_percent_larger)
  add_test(NAME parity.${c}
           COMMAND ${SB_SYSTEM_PYTHON} ${CMAKE_SOURCE_DIR}/tests/parity_rnn.py
                   $<TARGET_FILE:samebits> ${CMAKE_SOURCE_DIR} ${c})
  set_tests_properties(parity.${c} PROPERTIES TIMEOUT 300)
endforeach()
