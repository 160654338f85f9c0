# Engine tests: Philox known answers, streams, data order, determinism,
# save → restore → continue.
sb_add_test_exe(test_engine
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_engine.c
  LIBS sb_engine
  CASES
    philox_should_match_random123_known_answers
    streams_should_not_shift_when_another_stream_draws_more
    rng_below_should_stay_in_range_and_hit_every_value
    training_should_learn_the_blobs
    deterministic_runs_should_be_bitwise_equal
    save_restore_continue_should_equal_an_uninterrupted_run
    restore_should_reject_a_checkpoint_of_another_config
    epoch_order_should_be_a_permutation_that_changes_per_epoch
    config_validation_should_name_the_field)
