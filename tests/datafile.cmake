# Real-data readers (engine/datafile.c) and the batch export: files written
# byte by byte, malformed ones rejected with a message naming file and place,
# and exported batches equal to what a traced training run saw. The script
# cases (tests/datafiles.py) write .npy files with numpy itself and drive the
# samebits command: run, train and data export on each format.
sb_add_test_exe(test_datafile
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_datafile.c
  LIBS sb_engine
  CASES
    idx_reader_should_load_every_element_type_bitwise
    idx_reader_should_scale_ubyte_images_by_the_given_factor
    npy_reader_should_load_c_and_fortran_order_and_both_byte_orders
    csv_reader_should_take_the_label_column_by_name_or_index
    malformed_files_should_fail_with_one_line_naming_the_file_and_the_place
    exported_batches_should_hash_to_the_traced_batches_of_every_step
    export_should_not_move_the_trainer)

set(SB_DATAFILES_CASES
  numpy_written_files_should_load_bitwise_in_every_dtype_and_order
  suites_on_each_format_should_train_repeatably_from_a_copied_suite
  malformed_data_should_exit_2_with_one_line_and_write_nothing
  export_should_equal_the_batches_the_trace_recorded
  suite_keys_for_data_files_should_be_strict)
foreach(c ${SB_DATAFILES_CASES})
  add_test(NAME datafiles.${c}
           COMMAND ${SB_PYTHON} ${CMAKE_SOURCE_DIR}/tests/datafiles.py $<TARGET_FILE:samebits>
                   ${CMAKE_SOURCE_DIR} ${c})
  set_tests_properties(datafiles.${c} PROPERTIES TIMEOUT 600)
endforeach()
