# PyTorch parity (tests/parity_torch.py): the MLP and the CNN trained by
# samebits (ref and blas) and by PyTorch from the same initial weights on the
# same batches must give the same losses, step-1 gradients and final weights
# within the tolerances the script states. It runs with Debian's /usr/bin/python3
# (python3-torch, python3-numpy; tools/install-deps --tests installs them),
# never with SB_PYTHON: build/venv's numpy 2 cannot load torch 1.13. A missing
# torch fails the tests; it does not skip them.
find_program(SB_SYSTEM_PYTHON python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT SB_SYSTEM_PYTHON)
  # keep the tests registered so they fail loudly instead of vanishing
  set(SB_SYSTEM_PYTHON /usr/bin/python3)
endif()
set(SB_PARITY_CASES
  mlp_with_sgd_momentum_should_match_pytorch_losses_gradients_and_weights
  mlp_with_adamw_should_match_pytorch_losses_gradients_and_weights
  parity_check_should_fail_when_pytorch_uses_a_learning_rate_0_1_percent_larger
  init_only_should_write_the_step_0_checkpoint_training_starts_from
  cnn_with_sgd_momentum_should_match_pytorch_losses_gradients_and_weights
  cnn_with_adamw_should_match_pytorch_losses_gradients_and_weights
  cnn_parity_check_should_fail_when_pytorch_uses_a_learning_rate_0_1_percent_larger)
foreach(c ${SB_PARITY_CASES})
  add_test(NAME parity.${c}
           COMMAND ${SB_SYSTEM_PYTHON} ${CMAKE_SOURCE_DIR}/tests/parity_torch.py
                   $<TARGET_FILE:samebits> ${CMAKE_SOURCE_DIR} ${c})
  set_tests_properties(parity.${c} PROPERTIES TIMEOUT 300)
endforeach()
