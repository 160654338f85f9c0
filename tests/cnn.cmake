# CNN tests: the model learns the shapes, deterministic runs repeat bitwise
# on ref and blas, save → restore → continue, the shapes dataset and image
# augmentation.
sb_add_test_exe(test_cnn
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_cnn.c
  LIBS sb_engine
  CASES
    cnn_should_learn_the_shapes
    cnn_deterministic_runs_should_be_bitwise_equal_on_ref_and_blas
    cnn_save_restore_continue_should_equal_an_uninterrupted_run
    shapes_dataset_should_be_reproducible_and_hold_every_class
    augmentation_should_change_images_only_through_its_stream
    cnn_config_validation_should_name_the_field)
