// For test binaries that ctest runs under mpiexec: a GoogleTest environment
// that initialises MPI and the communicator (backend "auto") once per process
// and checks CLIPSCALE_EXPECTED_RANKS. Include it in one file per binary;
// Comm() is the communicator the tests use.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>

#include "distributed/communicator_factory.h"
#include "distributed/mpi_runtime.h"

namespace clipscale::testing {

inline std::unique_ptr<MpiRuntime>& Runtime() {
  static auto* runtime = new std::unique_ptr<MpiRuntime>();
  return *runtime;
}
inline std::unique_ptr<Communicator>& Comm() {
  static auto* comm = new std::unique_ptr<Communicator>();
  return *comm;
}

class MpiEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    auto runtime = MpiRuntime::Init(nullptr, nullptr);
    ASSERT_TRUE(runtime.ok()) << runtime.status();
    Runtime() = std::move(*runtime);
    auto comm = CreateCommunicator(CommunicatorOptions().set_backend("auto"));
    ASSERT_TRUE(comm.ok()) << comm.status();
    Comm() = std::move(*comm);
    if (const char* expected = std::getenv("CLIPSCALE_EXPECTED_RANKS")) {
      ASSERT_EQ(Comm()->size(), std::atoi(expected)) << "started with the wrong number of ranks";
    }
  }
  void TearDown() override {
    Comm().reset();
    Runtime().reset();
  }
};
inline ::testing::Environment* const kMpiEnvironment =
    ::testing::AddGlobalTestEnvironment(new MpiEnvironment);

}  // namespace clipscale::testing
