# Trace tests (engine/trace.c): stage names, XXH3-128 known answers, the
# combine rule, output stats, the chunked tensor hash (boundaries, pinned
# values, vector paths, thread-count independence, canonical traces equal on
# 1-3 threads), writer round trips and refusals, and a table of corrupt files
# the reader must reject with a message naming file and place.
sb_add_test_exe(test_trace
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_trace.c
  LIBS sb_engine
  CASES
    stage_names_should_round_trip_and_reject_unknown_names
    xxh3_128_should_match_xxhsum_known_answers
    hash_combine_should_hash_the_hashes_in_order
    stats_should_sum_float_lanes_per_block_and_the_blocks_in_double
    stats_should_match_the_documented_order_on_random_data
    stats_should_make_maxabs_and_l2_nan_when_any_element_is_nan
    stats_should_report_inf_and_zero_for_empty_input
    tensor_hash_should_be_plain_xxh3_up_to_one_chunk_and_chunked_above
    tensor_hash_and_stats_should_match_pinned_known_answers
    vector_digests_should_equal_the_plain_c_lanes
    digests_should_not_depend_on_the_thread_count
    canonical_traces_should_be_identical_on_1_2_and_3_threads
    round_trip_should_preserve_many_records_and_values_bitwise
    round_trip_without_values_should_store_records_only
    op_ids_should_be_stable_for_repeated_names
    writer_should_report_misuse_at_close_and_leave_no_file
    writer_should_refuse_to_overwrite_an_existing_trace
    writer_should_leave_no_tmp_file_after_close_or_abort
    reader_should_report_io_errors_naming_the_file
    reader_should_reject_corrupt_files_naming_the_file_and_the_place)
