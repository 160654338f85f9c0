# The blas backend's fork-join pool (kernels/threadpool.c): every worker runs
# every job once, sleeping helpers wake, oversubscription, free while
# spinning or asleep.
# A lost wake-up shows as a hang: each case gets 60 s (they take < 1 s).
set(SB_POOL_CASES
    every_worker_should_run_every_job_once
    jobs_after_idle_gaps_should_wake_sleeping_helpers
    more_threads_than_cores_should_still_run_every_job
    free_should_return_whether_helpers_spin_or_sleep)
sb_add_test_exe(test_threadpool
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_threadpool.c
  LIBS sb_kernels
  CASES ${SB_POOL_CASES})
foreach(c ${SB_POOL_CASES})
  set_tests_properties(test_threadpool.${c} PROPERTIES TIMEOUT 60)
endforeach()
