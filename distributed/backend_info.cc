#include "distributed/backend_info.h"

#include <mpi.h>

#include "absl/strings/str_cat.h"
#if CLIPSCALE_WITH_NCCL
#include <nccl.h>
#endif

namespace clipscale {

#if CLIPSCALE_WITH_CUDA
// Defined in cuda_info.cu.
int CudaDeviceCount(std::string* error);
#endif

BackendInfo QueryBackendInfo() {
  BackendInfo info;
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(version, &length);
  info.mpi_library = std::string(version, length);
  if (auto eol = info.mpi_library.find_first_of("\n,"); eol != std::string::npos) {
    info.mpi_library.resize(eol);
  }
#if CLIPSCALE_WITH_CUDA
  info.cuda_compiled = true;
  info.cuda_devices = CudaDeviceCount(&info.cuda_error);
#endif
#if CLIPSCALE_WITH_NCCL
  info.nccl_compiled = true;
  int nccl = 0;
  if (ncclGetVersion(&nccl) == ncclSuccess) {
    info.nccl_version = absl::StrCat(nccl / 10000, ".", (nccl / 100) % 100, ".", nccl % 100);
  }
#endif
  return info;
}

}  // namespace clipscale
