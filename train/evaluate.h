// Zero-shot classification and image–text retrieval on a held-out split,
// streamed through the loader: memory holds the embeddings (N x d), never the
// decoded split.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/dataset_index.h"
#include "data/stream_loader.h"
#include "data/tokenizer.h"
#include "distributed/communicator.h"
#include "models/clip_model.h"

namespace clipscale {

struct EvalOptions {
  std::vector<std::string> classnames;  // empty: no zero-shot metrics
  std::vector<std::string> templates;   // "{}" replaced by the class name
  int64_t batch_size = 256;             // images per encoder pass, per rank
  int workers = 0;                      // decode threads; 0: the machine's cores
  ShardCache* cache = nullptr;          // for http(s):// and pipe: shards
};

// Embeds every sample of the split in index order (OpenCLIP's eval transform,
// exact decode, no grad) and returns zeroshot_top1/top5 (samples with a
// `.cls` or json label), retrieval metrics when every image has a caption
// (see RetrievalMetrics; with several captions per image, one per line of the
// .txt as in Flickr30k/COCO splits, image->text counts a hit when any of the
// image's captions ranks within k, as CLIP_benchmark does) and the chance
// levels. Samples that do not decode are left out and counted in "bad_samples".
//
// With a communicator of W ranks (a collective: every rank calls it with the
// same split and options) rank r reads and embeds only its contiguous ~1/W of
// the split and of the class names; embeddings are all-gathered in split
// order, so the metrics do not depend on W. Inputs go to the model's device.
absl::StatusOr<std::map<std::string, double>> Evaluate(
    ClipModel& model, const ClipTokenizer& tokenizer, std::shared_ptr<const DatasetIndex> split,
    const EvalOptions& options, Communicator* comm = nullptr);

// The class names and templates a split brings along: `classnames` (a file)
// when given, else classnames.txt beside the split's shards (as `data synth`
// and CLIP_benchmark write it). Empty `templates` become those of
// zeroshot_classification_templates.txt there, else "a photo of a {}.".
// Empty names when there are none.
absl::Status LoadSplitClasses(const DatasetIndex& split, const std::string& classnames,
                              EvalOptions* options);

}  // namespace clipscale
