# Transformer tests (engine/transformer.c): it learns, tied and untied;
# deterministic runs repeat bitwise on ref and blas and blas stays close to
# ref; canonical mode is the same bits everywhere; fast mode with perturb
# differs; save → restore → continue; finite-difference gradients; config
# validation. Then PyTorch parity (tests/parity_transformer.py), with
# Debian's /usr/bin/python3 for the reason tests/parity.cmake gives.
sb_add_test_exe(test_transformer
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_transformer.c
  LIBS sb_engine
  CASES
    transformer_should_learn_the_chars
    transformer_tied_and_untied_should_both_train
    transformer_deterministic_runs_should_be_bitwise_equal_on_ref_and_blas
    transformer_blas_should_stay_within_a_tolerance_of_ref
    transformer_canonical_mode_should_give_the_same_bits_on_ref_and_blas_and_any_threads
    transformer_fast_mode_with_perturb_should_differ_between_runs
    transformer_save_restore_continue_should_equal_an_uninterrupted_run
    transformer_gradients_should_match_finite_differences_on_ref
    transformer_config_validation_should_name_the_field)
# find_program keeps parity.cmake's result when that ran first (it caches it)
find_program(SB_SYSTEM_PYTHON python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT SB_SYSTEM_PYTHON)
  # keep the tests registered so they fail loudly instead of vanishing
  set(SB_SYSTEM_PYTHON /usr/bin/python3)
endif()
foreach(c
    transformer_with_sgd_momentum_should_match_pytorch_losses_gradients_and_weights
    transformer_with_adamw_should_match_pytorch_losses_gradients_and_weights
    transformer_parity_check_should_fail_when_pytorch_uses_a_learning_rate_0_1_percent_larger)
  add_test(NAME parity.${c}
           COMMAND ${SB_SYSTEM_PYTHON} ${CMAKE_SOURCE_DIR}/tests/parity_transformer.py
                   $<TARGET_FILE:samebits> ${CMAKE_SOURCE_DIR} ${c})
  set_tests_properties(parity.${c} PROPERTIES TIMEOUT 300)
endforeach()
