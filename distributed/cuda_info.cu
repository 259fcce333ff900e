#include <cuda_runtime.h>

#include <string>

namespace clipscale {

int CudaDeviceCount(std::string* error) {
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    *error = cudaGetErrorString(status);
    return 0;
  }
  return count;
}

}  // namespace clipscale
