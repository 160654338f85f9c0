# Tests of the reports (harness/report*.c, `samebits report`): the C unit
# tests of tests/test_report.c, and tests/report_check.py, which runs real
# suites and checks junit.xml with xmllint against tests/junit.xsd and
# report.html in headless Chromium (tools/check installs both; a missing one
# fails the test). The rendered page's screenshot is kept as
# ${CMAKE_BINARY_DIR}/report-screenshot.png.

set(SB_REPORT_UNIT_CASES
  text_xml_should_escape_markup_and_replace_invalid_utf8
  text_md_should_escape_markdown_and_keep_tables_intact
  ulp_bucket_should_be_the_bit_length_of_the_distance
  load_should_name_the_place_of_a_malformed_summary
  matrix_should_mark_each_cell_with_its_worst_comparison
  junit_should_count_a_crashed_run_an_erring_check_and_a_failure
  histogram_should_bucket_ulp_distances_per_tensor
  paths_outside_the_results_folder_should_never_be_opened
  write_should_refuse_existing_reports_unless_overwriting)
sb_add_test_exe(test_report
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_report.c
  LIBS sb_harness
  CASES ${SB_REPORT_UNIT_CASES})

set(SB_REPORT_CASES
  junit_should_validate_against_the_schema_and_name_the_source_op
  junit_should_carry_errors_for_timed_out_runs_and_unevaluable_checks
  html_should_render_in_headless_chromium_with_charts_and_tables
  html_should_fetch_nothing_from_the_network
  md_should_hold_the_tables_of_the_html_report
  report_should_regenerate_identical_files_and_refuse_to_overwrite
  report_should_exit_2_with_one_line_on_a_missing_or_corrupt_summary
  reports_should_escape_hostile_strings_in_every_format
  artifact_table_should_flag_a_checkpoint_that_changed_after_the_run
  run_should_keep_summary_and_exit_2_when_a_report_cannot_be_written)
foreach(c ${SB_REPORT_CASES})
  add_test(NAME report.${c}
           COMMAND ${SB_PYTHON} ${CMAKE_SOURCE_DIR}/tests/report_check.py $<TARGET_FILE:samebits>
                   ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR} ${c})
  set_tests_properties(report.${c} PROPERTIES TIMEOUT 600)
endforeach()
