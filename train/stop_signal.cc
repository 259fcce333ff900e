#include "train/stop_signal.h"

#include <signal.h>

#include <atomic>

namespace clipscale {
namespace {

std::atomic<int> g_request{0};
struct sigaction g_previous[3];
constexpr int kSignals[3] = {SIGTERM, SIGUSR1, SIGINT};

void OnSignal(int signal) {
  const int request = static_cast<int>(signal == SIGINT ? StopRequest::kInterrupt
                                                        : StopRequest::kRequeue);
  int seen = g_request.load();
  while (seen < request && !g_request.compare_exchange_weak(seen, request)) {
  }
}

}  // namespace

StopSignalScope::StopSignalScope() {
  g_request = 0;
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &action, &g_previous[i]);
}

StopSignalScope::~StopSignalScope() {
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &g_previous[i], nullptr);
}

StopRequest PendingStopRequest() { return static_cast<StopRequest>(g_request.load()); }

}  // namespace clipscale
