# Environment fingerprint (harness/fingerprint.c, fingerprint_collect.c,
# cmd_env.c) and the suite's baseline "fallback" key (harness/suite.c).
sb_add_test_exe(test_fingerprint
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_fingerprint.c
  LIBS sb_harness
  CASES
    fingerprint_should_report_the_cpu_model_of_proc_cpuinfo
    fingerprint_should_report_the_openblas_core_name_threads_and_version
    fingerprint_should_list_the_numerics_isa_flags_of_proc_cpuinfo
    fingerprint_should_capture_numerics_environment_variables
    diff_should_report_exactly_the_changed_bit_relevant_fields
    diff_should_treat_a_malformed_fingerprint_as_not_recorded
    diff_should_print_numbers_outside_the_integer_range
    old_kernel_warning_should_fire_for_prescott_on_an_avx512_cpu
    warnings_should_flag_threads_versions_and_devices
    cuda_fields_should_say_absent_or_no_device_when_missing
    env_command_should_print_every_field_warnings_first
    suite_should_accept_a_baseline_fallback_and_reject_it_elsewhere)
