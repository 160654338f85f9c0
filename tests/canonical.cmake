# Tests of canonical mode (kernels/canonical*.c, docs/canonical.md): the math
# functions against double libm, the summation tree against its documented
# loop, ref == blas bitwise on every SIMD path and thread count 1..8 for
# every op, and the canonical GEMM's error next to OpenBLAS's.
sb_add_test_exe(test_canonical
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_canonical.c
  LIBS sb_kernels
  CASES
    canonical_math_should_stay_within_its_ulp_bounds_of_double_libm
    canonical_math_should_follow_c99_for_special_values
    canonical_vector_math_should_give_the_scalar_bits_on_every_path
    canonical_sum_should_equal_the_documented_strided_tree_for_every_length
    canonical_gemm_should_equal_ref_bitwise_on_every_path_and_thread_count
    canonical_gemm_paths_should_equal_ref_bitwise_on_every_path_and_thread_count
    canonical_ops_should_equal_ref_bitwise_on_every_path_and_thread_count
    canonical_gemm_error_should_be_no_worse_than_openblas
    canonical_isa_switch_should_reject_unknown_values)

# Canonical outputs pinned by hash: a change of the canonical order fails here.
sb_add_test_exe(test_canonical_pinned
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_canonical_pinned.c
  LIBS sb_engine
  CASES canonical_results_should_keep_their_pinned_bits)
