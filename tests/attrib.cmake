# Tests of drift attribution (harness/attrib.c), its place in checks and
# summary.json (checks.c, summary.c) and `samebits trace-diff`
# (cmd_trace_diff.c). The cli_ cases run the samebits binary (SB_BIN).

set(SB_ATTRIB_CASES
  identical_traces_should_agree
  source_in_the_middle_should_be_found_and_later_differences_called_propagated
  two_independent_sources_should_both_be_listed_with_counts_and_first_steps
  weights_should_first_differ_at_the_first_optimizer_step_that_differs
  growth_should_be_computed_from_the_snapshot_values
  per_op_errors_should_report_max_abs_rel_and_ulp_with_their_step
  structure_mismatch_should_be_reported_and_stop_the_walk
  recheck_flagged_ops_should_be_listed_with_first_step_and_count
  corrupt_or_missing_trace_should_give_an_error_not_a_crash
  failing_check_should_carry_attribution_into_summary_json_and_the_verdict
  missing_trace_should_keep_the_fail_and_name_the_file
  baseline_without_a_trace_should_say_so_and_with_one_should_be_attributed)
set(SB_ATTRIB_CLI_CASES
  cli_trace_diff_should_exit_0_when_traces_agree_and_1_when_they_differ
  cli_trace_diff_json_should_parse_and_name_the_source
  cli_trace_diff_should_exit_2_with_one_line_naming_a_bad_file)

sb_add_test_exe(test_attrib
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_attrib.c
  LIBS sb_harness
  CASES ${SB_ATTRIB_CASES} ${SB_ATTRIB_CLI_CASES})
foreach(c IN LISTS SB_ATTRIB_CLI_CASES)
  set_tests_properties(test_attrib.${c} PROPERTIES ENVIRONMENT "SB_BIN=$<TARGET_FILE:samebits>")
endforeach()
