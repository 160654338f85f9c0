# End-to-end tests of the samebits command (tests/e2e.py), one CTest test per
# case. SB_PYTHON is a Python with numpy and safetensors (tools/check makes
# build/venv); only the interop case needs those packages.
set(SB_E2E_CASES
  smoke_suite_should_pass_against_its_blessed_baseline
  perturbed_fast_cell_should_be_reported_not_repeatable
  deterministic_threads_cross_check_should_agree
  bless_should_write_a_manifest_and_refuse_to_overwrite
  baseline_check_should_fail_when_training_changes
  missing_baseline_should_be_an_error_not_a_pass
  timed_out_runs_should_fail_alone_and_exit_3
  bad_suites_should_exit_2_with_one_line_and_write_nothing
  results_should_never_be_rewritten_and_resume_should_keep_finished_runs
  train_resume_should_equal_an_uninterrupted_run
  checkpoint_should_load_in_the_reference_safetensors_package
  pitfalls_suite_should_name_the_stage_and_op_of_every_case
  recheck_should_flag_nondeterministic_ops_within_one_run
  trace_diff_should_name_the_source_between_two_runs
  mlp_suite_should_pass_against_its_blessed_baseline
  malformed_manifest_should_be_an_error_naming_the_file_and_place
  canonical_suite_should_give_the_same_bits_on_any_threads_backend_and_simd_path
  env_command_should_print_the_fingerprint_with_warnings_first
  runs_should_record_the_environment_in_run_json_checkpoint_and_summary
  baseline_from_another_environment_should_name_the_fields_and_use_the_fallback
  cnn_suite_should_pass_against_its_blessed_baseline
  bench_trace_should_print_one_json_line_per_configuration
  bench_gemm_should_report_the_machine_peak_next_to_each_shape
  rnn_suite_should_pass_against_its_blessed_baseline
  transformer_suite_should_pass_against_its_blessed_baseline)
foreach(c ${SB_E2E_CASES})
  add_test(NAME e2e.${c}
           COMMAND ${SB_PYTHON} ${CMAKE_SOURCE_DIR}/tests/e2e.py $<TARGET_FILE:samebits>
                   ${CMAKE_SOURCE_DIR} ${c})
  # exit 77: the case cannot run in this build (e.g. a subcommand not yet
  # dispatched) and is reported as skipped, never as passed
  set_tests_properties(e2e.${c} PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77)
endforeach()
