# Tests of the checkpoint layer (engine/safetensors.c) and the diff
# (harness/diff.c, cmd_diff.c, cmd_inspect.c), plus script tests: the
# command line on bad input, and interop with the reference `safetensors`
# Python package (SB_PYTHON must have it: the interop tests fail without it).

sb_add_test_exe(test_safetensors
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_safetensors.c
  LIBS sb_engine
  CASES
    dtype_names_and_sizes_should_follow_the_spec
    sha256_should_match_the_fips_test_vectors
    round_trip_should_preserve_names_dtypes_shapes_and_bytes
    round_trip_should_preserve_metadata
    writer_should_sort_keys_put_metadata_first_and_pad_the_header_to_8_bytes
    writer_should_reject_bad_tensors_and_duplicate_names
    reader_should_accept_reference_layouts_padding_and_empty_tensors
    weights_digest_should_ignore_metadata_and_tensor_order
    weights_digest_should_change_when_one_bit_flips
    reader_should_reject_a_file_shorter_than_the_length_field
    reader_should_reject_an_empty_file
    reader_should_reject_a_header_length_past_the_end_of_the_file
    reader_should_reject_a_header_length_above_the_limit
    reader_should_reject_a_zero_header_length
    reader_should_reject_malformed_json
    reader_should_reject_a_header_that_is_not_an_object
    reader_should_reject_text_after_the_json
    reader_should_reject_invalid_utf8
    reader_should_reject_a_nul_byte_in_the_header
    reader_should_reject_an_escaped_nul_in_a_name
    reader_should_reject_an_unknown_dtype
    reader_should_reject_a_dtype_that_is_not_a_string
    reader_should_reject_a_missing_field
    reader_should_reject_an_unknown_field
    reader_should_reject_a_duplicate_field
    reader_should_reject_duplicate_tensor_names
    reader_should_reject_a_non_object_entry
    reader_should_reject_a_non_string_metadata_value
    reader_should_reject_metadata_that_is_not_an_object
    reader_should_reject_a_duplicate_metadata_key
    reader_should_reject_a_negative_dimension
    reader_should_reject_a_fractional_dimension
    reader_should_reject_a_dimension_above_2_to_the_64
    reader_should_reject_a_shape_whose_element_count_overflows
    reader_should_reject_a_shape_whose_byte_count_overflows
    reader_should_reject_too_many_dimensions
    reader_should_reject_offsets_past_the_end_of_the_data
    reader_should_reject_an_end_offset_before_the_begin
    reader_should_reject_a_byte_count_not_matching_the_shape
    reader_should_reject_data_offsets_of_the_wrong_length
    reader_should_reject_overlapping_tensors
    reader_should_reject_a_hole_between_tensors
    reader_should_reject_trailing_bytes_after_the_last_tensor
    reader_should_reject_a_header_with_too_many_values
    reader_should_name_the_file_and_report_io_errors_for_missing_files
    atomic_write_should_refuse_to_overwrite_without_the_flag
    atomic_write_should_replace_the_file_with_the_flag
    atomic_write_should_leave_no_tmp_file_after_success_or_failure
    writer_save_should_refuse_to_overwrite_and_leave_no_tmp_file)

sb_add_test_exe(test_diff
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_diff.c
  LIBS sb_harness
  CASES
    ulp_distance_should_be_zero_for_equal_values
    ulp_distance_should_be_zero_between_plus_and_minus_zero
    ulp_distance_should_be_one_to_the_next_float
    ulp_distance_should_count_values_across_zero_on_sign_crossing
    ulp_distance_should_count_subnormals_one_by_one
    ulp_distance_should_be_one_from_flt_max_to_infinity
    ulp_distance_should_span_the_whole_line_from_minus_to_plus_infinity
    ulp_distance_should_be_infinite_from_nan_to_a_number_and_zero_between_nans
    ulp_distance_f64_should_follow_the_same_rules
    tolerance_str_should_print_only_the_given_fields
    diff_should_report_identical_files_as_bitwise_equal
    diff_should_fail_bitwise_but_pass_a_tolerance_for_one_ulp
    diff_should_apply_atol_and_rtol_like_allclose_relative_to_b
    diff_should_apply_the_ulp_limit
    diff_should_require_every_given_criterion
    diff_should_report_tensors_present_in_one_file_only
    diff_should_report_dtype_and_shape_mismatches
    diff_should_count_nan_in_one_file_and_fail_even_with_a_huge_tolerance
    diff_should_let_nan_agree_with_nan_under_a_tolerance_but_see_payload_bits
    diff_should_count_inf_mismatches
    diff_should_see_the_sign_of_zero_bitwise_but_not_under_a_tolerance
    diff_should_name_the_worst_tensor_and_its_worst_index
    diff_should_compare_other_dtypes_bytewise_whatever_the_tolerance
    diff_files_should_report_the_bad_file
    cli_diff_should_exit_0_for_equal_files_and_1_for_drift
    cli_diff_should_exit_0_when_drift_is_within_the_ulp_limit
    cli_diff_should_exit_2_with_one_line_on_bad_usage_and_sloppy_numbers
    cli_diff_json_should_parse_and_carry_exact_values
    cli_inspect_should_list_tensors_and_parse_as_json)
foreach(c IN ITEMS
    cli_diff_should_exit_0_for_equal_files_and_1_for_drift
    cli_diff_should_exit_0_when_drift_is_within_the_ulp_limit
    cli_diff_should_exit_2_with_one_line_on_bad_usage_and_sloppy_numbers
    cli_diff_json_should_parse_and_carry_exact_values
    cli_inspect_should_list_tensors_and_parse_as_json)
  set_tests_properties(test_diff.${c} PROPERTIES
    ENVIRONMENT "SB_BIN=$<TARGET_FILE:samebits>;SB_PYTHON=${SB_PYTHON}")
endforeach()

# A small writer used by the interop test: writes a checkpoint with samebits'
# C writer whose contents follow formulas tests/interop.py also knows.
add_executable(st_write_sample ${CMAKE_SOURCE_DIR}/tests/st_write_sample.c)
target_link_libraries(st_write_sample PRIVATE sb_engine)

foreach(c IN ITEMS
    reference_file_should_be_inspected_and_diffed_by_samebits
    samebits_file_should_load_in_the_reference_reader)
  add_test(NAME interop.${c}
           COMMAND ${SB_PYTHON} ${CMAKE_SOURCE_DIR}/tests/interop.py ${c}
                   $<TARGET_FILE:samebits> $<TARGET_FILE:st_write_sample>
                   ${CMAKE_CURRENT_BINARY_DIR}/interop_${c})
  set_tests_properties(interop.${c} PROPERTIES TIMEOUT 300)
endforeach()

foreach(c IN ITEMS
    inspect_should_exit_2_with_one_line_naming_the_file_for_every_bad_file
    diff_should_exit_2_with_one_line_naming_the_file_for_every_bad_file)
  add_test(NAME bad_input.${c}
           COMMAND sh ${CMAKE_SOURCE_DIR}/tests/bad_input.sh ${c} $<TARGET_FILE:samebits>
                   $<TARGET_FILE:test_safetensors> ${CMAKE_CURRENT_BINARY_DIR}/bad_input_${c})
  set_tests_properties(bad_input.${c} PROPERTIES TIMEOUT 300)
endforeach()
