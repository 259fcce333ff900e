// Zero-shot classification and image–text retrieval on a held-out split.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "data/examples.h"
#include "data/tokenizer.h"
#include "distributed/communicator.h"
#include "models/clip_model.h"

namespace clipscale {

struct EvalOptions {
  std::vector<std::string> classnames;  // empty: no zero-shot metrics
  std::vector<std::string> templates;   // "{}" replaced by the class name
  int64_t batch_size = 256;
};

// Embeds every example (eval transform, no grad) and returns
// zeroshot_top1/top5 (examples with labels), retrieval metrics (see
// RetrievalMetrics) and the chance levels for comparison.
//
// With a communicator of W ranks (a collective: every rank calls it with the
// same examples and options) rank r embeds only its contiguous ~1/W of the
// examples and of the class names; the embeddings are all-gathered and every
// rank returns the same metrics. Inputs go to the model's device.
std::map<std::string, double> Evaluate(ClipModel& model, const ClipTokenizer& tokenizer,
                                       const std::vector<Example>& examples,
                                       const EvalOptions& options,
                                       Communicator* comm = nullptr);

}  // namespace clipscale
