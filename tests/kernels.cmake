# Tests of kernels/: the ref oracle against finite differences and double
# precision, the blas backend against ref (both modes, 1 and 2 threads), its
# determinism and its fast-mode perturbation, and the backend registry.
sb_add_test_exe(test_kernels
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_kernels.c
  LIBS sb_kernels
  CASES
    gradcheck_should_match_finite_differences_for_linear_layer
    gradcheck_should_match_finite_differences_for_activations
    gradcheck_should_match_finite_differences_for_softmax_cross_entropy
    gradcheck_should_flag_a_deliberately_wrong_gradient
    ref_gemm_should_match_double_precision_for_all_transposes
    ref_optimizers_should_match_double_precision_formulas
    ref_optimizers_should_follow_pytorch_operation_order_bitwise
    backward_ops_should_add_into_gradients
    blas_gemm_should_match_ref_within_summation_bound
    blas_batch_ops_should_match_ref_within_summation_bound
    blas_elementwise_ops_should_equal_ref_bitwise
    blas_deterministic_reductions_should_repeat_bitwise
    blas_deterministic_reductions_should_not_depend_on_thread_count
    blas_fast_perturbed_bias_grad_should_vary_between_calls
    blas_fast_perturbed_loss_should_vary_between_calls
    blas_deterministic_mode_should_ignore_perturb_and_never_vary
    backend_new_should_reject_unknown_names_and_bad_threads
    mode_and_act_names_should_round_trip
    blas_info_should_describe_openblas)

# The weight-gradient and dropout ops: ref against finite differences, blas
# against ref (both modes, 1 and 2 threads), blas determinism and fast-mode
# perturbation of weight_grad.
sb_add_test_exe(test_kernels_more
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_kernels_more.c
  LIBS sb_kernels
  CASES
    gradcheck_should_match_finite_differences_for_weight_grad
    gradcheck_should_match_finite_differences_for_dropout
    dropout_should_scale_kept_zero_dropped_and_add_into_gradients_bitwise
    blas_weight_grad_should_match_ref_within_summation_bound
    blas_dropout_should_equal_ref_bitwise
    blas_deterministic_weight_grad_should_repeat_bitwise
    blas_deterministic_weight_grad_should_not_depend_on_threads_for_batches_up_to_256
    blas_fast_perturbed_weight_grad_should_vary_between_calls
    blas_fast_weight_grad_should_restore_the_openblas_thread_count)

# The vector clones of ref's elementwise loops against a scalar-only copy.
sb_add_test_exe(test_clones
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_clones.c
  LIBS sb_kernels
  CASES vector_clones_should_equal_the_scalar_loops_bitwise)
target_include_directories(test_clones PRIVATE ${CMAKE_SOURCE_DIR}/kernels)

# Convolution and pooling: ref against finite differences and a direct
# double-precision convolution, blas against ref (deterministic and fast, 1
# and 2 threads, guard bytes), determinism, fast-mode perturbation, and
# canonical ref == blas bitwise on every SIMD path and thread count 1..4.
sb_add_test_exe(test_kernels_conv
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_kernels_conv.c
  LIBS sb_kernels
  CASES
    gradcheck_should_match_finite_differences_for_conv2d_input_weight_and_bias
    gradcheck_should_match_finite_differences_for_max_and_avg_pool
    conv2d_should_match_a_direct_double_precision_convolution
    blas_conv2d_should_match_ref_within_summation_bound
    pools_should_match_a_direct_double_precision_pooling
    maxpool_should_follow_the_window_order_on_ties_nans_and_signed_zeros
    blas_pools_should_equal_ref_bitwise_in_every_mode_and_thread_count
    blas_deterministic_conv2d_should_repeat_bitwise
    blas_fast_perturbed_conv2d_weight_grad_should_vary_between_calls
    canonical_conv2d_and_pools_should_equal_ref_bitwise_on_every_path_and_thread_count
    canonical_conv2d_should_differ_from_deterministic_mode)

# Layer norm and embedding: ref against finite differences and double
# precision, blas against ref (deterministic and fast, 1 and 2 threads, guard
# bytes), repeated token ids in the scatter-add, determinism, fast-mode
# perturbation, and canonical ref == blas bitwise on every SIMD path and
# thread count 1..4.
sb_add_test_exe(test_kernels_norm
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_kernels_norm.c
  LIBS sb_kernels
  CASES
    gradcheck_should_match_finite_differences_for_layernorm_input_weight_and_bias
    gradcheck_should_match_finite_differences_for_embedding_table
    layernorm_forward_should_match_double_precision_statistics_and_outputs
    embedding_should_copy_rows_and_add_every_occurrence_of_repeated_ids
    blas_layernorm_should_equal_ref_deterministic_and_stay_within_bound_fast
    blas_deterministic_layernorm_and_embedding_should_repeat_bitwise
    blas_fast_perturbed_norm_and_embedding_gradients_should_vary_between_calls
    canonical_layernorm_and_embedding_should_equal_ref_bitwise_on_every_path_and_thread_count
    canonical_layernorm_should_differ_from_deterministic_mode)

# Batch norm: ref against finite differences and double precision (batch
# statistics, the unbiased running variance, eval mode), blas against ref
# (deterministic and fast, 1 and 2 threads, guard bytes), determinism,
# fast-mode perturbation, and canonical ref == blas bitwise on every SIMD
# path and thread count 1..4.
sb_add_test_exe(test_kernels_bn
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_kernels_bn.c
  LIBS sb_kernels
  CASES
    gradcheck_should_match_finite_differences_for_batchnorm_input_weight_and_bias
    batchnorm_forward_should_match_double_precision_stats_running_update_and_eval
    blas_batchnorm_should_equal_ref_deterministic_and_stay_within_bound_fast
    blas_deterministic_batchnorm_should_repeat_bitwise
    blas_fast_perturbed_batchnorm_statistics_and_gradients_should_vary_between_calls
    canonical_batchnorm_should_equal_ref_bitwise_on_every_path_and_thread_count
    canonical_batchnorm_should_differ_from_deterministic_mode)

# Softmax, residual add and causal attention: ref against finite differences
# and double precision (with the causal mask), blas against ref (deterministic
# and fast, 1 and 2 threads, guard bytes) within summation bounds,
# determinism, fast-mode perturbation of dk/dv, and canonical ref == blas
# bitwise on every SIMD path and thread count 1..4.
sb_add_test_exe(test_kernels_attn
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_kernels_attn.c
  LIBS sb_kernels
  CASES
    gradcheck_should_match_finite_differences_for_softmax_and_residual
    gradcheck_should_match_finite_differences_for_attention_q_k_and_v
    attention_forward_should_match_double_precision_and_respect_the_causal_mask
    blas_softmax_and_residual_should_equal_ref_bitwise
    blas_attention_should_match_ref_within_summation_bound
    blas_deterministic_attention_should_repeat_bitwise_for_any_thread_count
    blas_fast_perturbed_attention_dk_dv_should_vary_between_calls
    canonical_softmax_residual_and_attention_should_equal_ref_bitwise_on_every_path_and_thread_count
    canonical_attention_should_differ_from_deterministic_mode)
target_include_directories(test_kernels_attn PRIVATE ${CMAKE_SOURCE_DIR}/kernels)

# The GRU cell step: ref against finite differences (dgi, dgh, dh_prev) and a
# double-precision forward, blas == ref bitwise (deterministic and fast, 1
# and 2 threads, guard bytes), canonical ref == blas bitwise on every SIMD
# path and thread count 1..4, and finite results for saturating inputs.
sb_add_test_exe(test_kernels_gru
  SOURCES ${CMAKE_SOURCE_DIR}/tests/test_kernels_gru.c
  LIBS sb_kernels
  CASES
    gradcheck_should_match_finite_differences_for_gru_dgi_dgh_and_dh_prev
    gru_forward_should_match_double_precision_in_deterministic_and_canonical_mode
    blas_gru_should_equal_ref_bitwise_in_deterministic_and_fast_mode
    canonical_gru_should_equal_ref_bitwise_on_every_path_and_thread_count
    canonical_gru_should_differ_from_deterministic_mode
    gru_should_stay_finite_for_saturating_preactivations)
