# Suite parser and matrix expansion (harness/suite.c).
sb_add_test_exe(test_suite
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_suite.c
  LIBS sb_harness
  CASES
    suite_should_parse_a_full_suite_into_its_values
    suite_should_fill_defaults_for_optional_keys
    suite_should_keep_the_exact_text_and_its_sha256
    suite_should_accept_integral_numbers_in_any_spelling
    suite_should_accept_a_utf8_byte_order_mark
    expand_should_nest_seeds_backends_modes_threads_repeats
    where_should_match_only_the_listed_axis_values
    axis_names_should_parse_both_spellings_and_print_values
    suite_should_reject_each_bad_suite_naming_its_json_path
    suite_should_parse_the_sequence_models_and_reject_their_bad_keys
    suite_should_report_malformed_text_with_line_and_column
    suite_should_refuse_a_matrix_of_more_than_100000_runs
    suite_load_should_read_a_file_and_name_it_in_errors
    suite_free_should_accept_null)
