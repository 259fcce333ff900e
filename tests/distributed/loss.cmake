# Tiled CLIP/SigLIP losses against the naive full-matrix losses, one rank.
clipscale_test(contrastive_loss_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/contrastive_loss_test.cc
  DEPS clipscale_distributed LABELS "unit" TORCH_PCH TIMEOUT 600)
# The same losses against OpenCLIP's ClipLoss/SigLipLoss run in the venv.
clipscale_test(contrastive_loss_parity_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/contrastive_loss_parity_test.cc
  DEPS clipscale_distributed LABELS "unit;parity" TORCH_PCH TIMEOUT 300)
