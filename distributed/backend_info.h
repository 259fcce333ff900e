// What the communication backends of this build are, and whether they work here.
#pragma once

#include <string>

namespace clipscale {

struct BackendInfo {
  std::string mpi_library;   // MPI_Get_library_version, first line
  bool cuda_compiled = false;
  int cuda_devices = 0;      // cudaGetDeviceCount; 0 when no driver or GPU
  std::string cuda_error;    // why no device was found, if none
  bool nccl_compiled = false;
  std::string nccl_version;  // ncclGetVersion, e.g. "2.30.7"
};

// Queries the linked libraries; never fails (missing pieces are reported).
BackendInfo QueryBackendInfo();

}  // namespace clipscale
