#include "data/stream_loader.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/cpu_affinity.h"
#include "core/logging.h"
#include "core/random.h"
#include "core/status.h"
#include "data/sample_reader.h"

namespace clipscale {
namespace {

// The memory of one batch, reused from step to step.
struct BatchStorage {
  std::shared_ptr<void> images, tokens, labels;
  LoadedBatch batch;
};

// Recycles batch memory; its own lock, so storage can come back from any
// thread (a worker dropping an abandoned job, the trainer releasing a batch).
class BufferPool {
 public:
  explicit BufferPool(const StreamLoaderOptions& o) : options_(o) {}
  std::unique_ptr<BatchStorage> Get() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        auto storage = std::move(free_.back());
        free_.pop_back();
        return storage;
      }
    }
    const int64_t n = options_.slice_size, s = options_.image_size;
    auto storage = std::make_unique<BatchStorage>();
    storage->images = Allocate(sizeof(float) * n * 3 * s * s);
    storage->tokens = Allocate(sizeof(int64_t) * n * options_.context_length);
    storage->labels = Allocate(sizeof(int64_t) * n);
    LoadedBatch& b = storage->batch;
    b.images = static_cast<float*>(storage->images.get());
    b.tokens = static_cast<int64_t*>(storage->tokens.get());
    b.labels = static_cast<int64_t*>(storage->labels.get());
    return storage;
  }
  void Put(std::unique_ptr<BatchStorage> storage) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(storage));
  }

 private:
  std::shared_ptr<void> Allocate(size_t bytes) {
    if (options_.allocate) return options_.allocate(bytes);
    return std::shared_ptr<void>(new char[bytes], std::default_delete<char[]>());
  }
  const StreamLoaderOptions& options_;
  std::mutex mu_;
  std::vector<std::unique_ptr<BatchStorage>> free_;
};

struct Counters {
  std::atomic<int64_t> samples{0}, replaced{0}, unreplaceable{0}, bad_image{0},
      bad_image_too_large{0}, bad_caption{0}, bad_shard{0};
  std::mutex mu;                          // guards by_shard
  std::map<int64_t, int64_t> by_shard;    // bad samples per shard index
  void AddBad(int64_t shard) {
    std::lock_guard<std::mutex> lock(mu);
    ++by_shard[shard];
  }
  void Add(Counters& o) {
    {
      std::scoped_lock lock(mu, o.mu);
      for (const auto& [shard, n] : o.by_shard) by_shard[shard] += n;
    }
    samples += o.samples;
    replaced += o.replaced;
    unreplaceable += o.unreplaceable;
    bad_image += o.bad_image;
    bad_image_too_large += o.bad_image_too_large;
    bad_caption += o.bad_caption;
    bad_shard += o.bad_shard;
  }
};

}  // namespace

// One step's rows being decoded.
struct Job {
  std::shared_ptr<const EpochOrder> order;
  int64_t epoch = 0, step = 0, first = 0, rows = 0;  // positions [first, first + rows)
  std::unique_ptr<BatchStorage> storage;
  std::atomic<int64_t> remaining{0};
  // Counted per job and added to the loader's when the batch is handed out,
  // so the counts cover exactly the steps consumed (not those prefetched).
  Counters counters;
  bool done = false;  // guarded by State::mu
  BufferPool* pool = nullptr;
  ~Job() {
    if (storage) pool->Put(std::move(storage));
  }
};

struct StreamLoader::State {
  StreamLoaderOptions options;
  std::shared_ptr<const DatasetIndex> index;
  std::vector<int64_t> shard_samples;
  std::vector<uint32_t> shard_source;
  std::unique_ptr<SampleReader> reader;
  BufferPool pool{options};
  Counters counters;
  std::atomic<int> warnings{0};

  std::mutex mu;
  std::condition_variable work_cv, done_cv;
  std::deque<std::shared_ptr<Job>> pipeline;  // scheduled steps, in order
  std::deque<std::pair<std::shared_ptr<Job>, int64_t>> tasks;  // (job, row)
  std::map<int64_t, std::shared_ptr<const EpochOrder>> orders;  // recent epochs
  int64_t next_epoch = 0, next_step = 0;
  bool stop = false;
  std::vector<std::thread> workers;

  absl::StatusOr<std::shared_ptr<const EpochOrder>> Order(int64_t epoch);
  absl::StatusOr<int64_t> Steps(const EpochOrder& order) const;
  absl::Status Schedule();  // with mu held
  // Takes every scheduled job and task out, with mu held. The caller lets them
  // go after unlocking: a job that goes returns its storage to the pool.
  struct Scheduled {
    std::deque<std::shared_ptr<Job>> jobs;
    std::deque<std::pair<std::shared_ptr<Job>, int64_t>> tasks;
  };
  Scheduled TakeScheduled() {
    Scheduled out;
    out.jobs.swap(pipeline);
    out.tasks.swap(tasks);
    return out;
  }
  void Work();
  void Process(Job& job, int64_t row);
  void Count(BadSample reason, const std::string& why, int64_t shard, Counters* counters);
};

absl::StatusOr<std::shared_ptr<const EpochOrder>> StreamLoader::State::Order(int64_t epoch) {
  auto it = orders.find(epoch);
  if (it != orders.end()) return it->second;
  ASSIGN_OR_RETURN(EpochOrder order,
                   EpochOrder::Create(shard_samples, shard_source, options.order, epoch));
  auto shared = std::make_shared<const EpochOrder>(std::move(order));
  if (orders.size() >= 2) orders.erase(orders.begin());
  orders[epoch] = shared;
  return shared;
}

absl::StatusOr<int64_t> StreamLoader::State::Steps(const EpochOrder& order) const {
  if (options.global_batch > 0) return order.size() / options.global_batch;
  const int64_t end = options.range_end < 0 ? order.size() : std::min(options.range_end, order.size());
  const int64_t span = std::max<int64_t>(0, end - options.range_begin);
  return (span + options.slice_size - 1) / options.slice_size;
}

absl::Status StreamLoader::State::Schedule() {
  const bool training = options.global_batch > 0;
  while (static_cast<int64_t>(pipeline.size()) < options.prefetch_steps) {
    ASSIGN_OR_RETURN(auto order, Order(next_epoch));
    ASSIGN_OR_RETURN(int64_t steps, Steps(*order));
    if (next_step >= steps) {
      if (!training) return absl::OkStatus();  // one pass
      if (steps == 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "epoch ", next_epoch, " has ", order->size(), " samples, fewer than one global batch of ",
            options.global_batch));
      }
      ++next_epoch;
      next_step = 0;
      continue;
    }
    auto job = std::make_shared<Job>();
    job->order = order;
    job->epoch = next_epoch;
    job->step = next_step;
    if (training) {
      job->first = next_step * options.global_batch + options.slice_begin;
      job->rows = options.slice_size;
    } else {
      const int64_t end =
          options.range_end < 0 ? order->size() : std::min(options.range_end, order->size());
      job->first = options.range_begin + next_step * options.slice_size;
      job->rows = std::min(options.slice_size, end - job->first);
    }
    job->pool = &pool;
    job->storage = pool.Get();
    LoadedBatch& batch = job->storage->batch;
    batch.valid.assign(job->rows, 0);
    batch.keys.resize(job->rows);
    batch.captions.resize(job->rows);
    job->remaining = job->rows;
    for (int64_t r = 0; r < job->rows; ++r) tasks.emplace_back(job, r);
    pipeline.push_back(std::move(job));
    ++next_step;
    work_cv.notify_all();
  }
  return absl::OkStatus();
}

void StreamLoader::State::Count(BadSample reason, const std::string& why, int64_t shard,
                                Counters* c) {
  switch (reason) {
    case BadSample::kImage: ++c->bad_image; break;
    case BadSample::kImageTooLarge: ++c->bad_image_too_large; break;
    case BadSample::kCaption: ++c->bad_caption; break;
    case BadSample::kShard: ++c->bad_shard; break;
    case BadSample::kNone: return;
  }
  c->AddBad(shard);
  // The first few are shown; the rest are only counted (web data has many).
  if (warnings++ < 20) LogWarning("bad sample skipped: ", why);
}

void StreamLoader::State::Process(Job& job, int64_t row) {
  const int64_t s = options.image_size;
  LoadedBatch& b = job.storage->batch;
  RowOutput out{b.images + row * 3 * s * s, b.tokens + row * options.context_length,
                b.labels + row, &b.keys[row], &b.captions[row]};
  const auto epoch = static_cast<uint64_t>(job.epoch);
  const int64_t position = job.first + row;
  const int attempts = options.replace_bad ? 1 + options.max_replacements : 1;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    // Replacements are drawn from the position alone: the same on every run and every W.
    const int64_t p = attempt == 0 ? position
                                   : static_cast<int64_t>(
                                         MixSeed(MixSeed(options.order.seed, epoch, 4),
                                                 static_cast<uint64_t>(position), attempt) %
                                         static_cast<uint64_t>(job.order->size()));
    std::string why;
    const SampleRef ref = job.order->At(p);
    const BadSample bad = reader->Read(ref,
                                       MixSeed(MixSeed(options.order.seed, epoch, 3),
                                               static_cast<uint64_t>(p)),
                                       out, &why);
    if (bad == BadSample::kNone) {
      b.valid[row] = 1;
      ++job.counters.samples;
      if (attempt > 0) ++job.counters.replaced;
      return;
    }
    Count(bad, why, ref.shard, &job.counters);
  }
  // Nothing usable: a zero row, marked invalid (training keeps the batch shape).
  std::memset(out.image, 0, sizeof(float) * 3 * s * s);
  std::memset(out.tokens, 0, sizeof(int64_t) * options.context_length);
  *out.label = -1;
  out.caption->clear();
  b.valid[row] = 0;
  ++job.counters.unreplaceable;
}

void StreamLoader::State::Work() {
  // Decoding fills the time the training thread leaves: on a CPU shared with
  // the model's threads, a decode thread must not stall them (an OpenMP region
  // waits for its slowest thread), so it runs at a lower priority.
  if (options.worker_nice > 0) {
    const int base = getpriority(PRIO_PROCESS, 0);
    (void)setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)),
                      std::min(19, base + options.worker_nice));
  }
  while (true) {
    std::pair<std::shared_ptr<Job>, int64_t> task;
    {
      std::unique_lock<std::mutex> lock(mu);
      work_cv.wait(lock, [&] { return stop || !tasks.empty(); });
      if (stop) return;
      task = std::move(tasks.front());
      tasks.pop_front();
    }
    Process(*task.first, task.second);
    if (--task.first->remaining == 0) {
      std::lock_guard<std::mutex> lock(mu);
      task.first->done = true;
      done_cv.notify_all();
    }
    task.first.reset();  // outside the lock: a dropped job returns its storage
  }
}

absl::StatusOr<std::unique_ptr<StreamLoader>> StreamLoader::Create(
    std::shared_ptr<const DatasetIndex> index, const ClipTokenizer* tokenizer,
    const StreamLoaderOptions& options) {
  if (options.slice_size < 1) return absl::InvalidArgumentError("loader: slice_size must be >= 1");
  if (options.global_batch > 0 &&
      (options.slice_begin < 0 || options.slice_begin + options.slice_size > options.global_batch)) {
    return absl::InvalidArgumentError("loader: the slice must lie inside the global batch");
  }
  if (options.prefetch_steps < 1) {
    return absl::InvalidArgumentError("data.prefetch_steps: must be at least 1");
  }
  if (options.range_begin < 0) return absl::InvalidArgumentError("loader: negative range");
  std::unique_ptr<StreamLoader> loader(new StreamLoader());
  loader->options_ = options;
  auto state = std::make_shared<State>();
  state->options = options;
  if (state->options.workers <= 0) {
    state->options.workers = AffinityCpuCount();
  }
  state->index = index;
  for (const auto& shard : index->shards()) {
    state->shard_samples.push_back(shard.samples);
    state->shard_source.push_back(shard.source);
  }
  SampleReaderOptions reader;
  reader.image_size = options.image_size;
  reader.augment = options.augment;
  reader.crop = options.crop;
  reader.fast_decode = options.fast_decode;
  reader.context_length = options.context_length;
  reader.require_caption = options.global_batch > 0;
  reader.cache = options.cache;
  // The blocks being read (two, across a block boundary) plus one shard per worker.
  reader.cached_shards =
      static_cast<int>(2 * options.order.shuffle_block_shards) + state->options.workers + 2;
  state->reader = std::make_unique<SampleReader>(index, tokenizer, reader);
  {
    std::lock_guard<std::mutex> lock(state->mu);
    RETURN_IF_ERROR(state->Order(0).status());
  }
  for (int i = 0; i < state->options.workers; ++i) {
    state->workers.emplace_back([s = state.get()] { s->Work(); });
  }
  loader->state_ = std::move(state);
  return loader;
}

StreamLoader::~StreamLoader() {
  if (!state_) return;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop = true;
    state_->work_cv.notify_all();
  }
  for (auto& t : state_->workers) t.join();
  // Jobs still scheduled return their storage here; batches handed out keep
  // the state alive through their deleters.
  State::Scheduled dropped;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    dropped = state_->TakeScheduled();
  }
}

absl::StatusOr<int64_t> StreamLoader::StepsInEpoch(int64_t epoch) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  ASSIGN_OR_RETURN(auto order, state_->Order(epoch));
  return state_->Steps(*order);
}

absl::Status StreamLoader::Seek(int64_t epoch, int64_t step) {
  if (epoch < 0 || step < 0) return absl::InvalidArgumentError("loader: negative seek");
  State::Scheduled dropped;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    dropped = state_->TakeScheduled();
    state_->next_epoch = epoch;
    state_->next_step = step;
  }
  // Workers may still be writing rows of the dropped jobs: those jobs keep
  // their storage until the last row is done, so nothing is overwritten.
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<LoadedBatch>> StreamLoader::Next() {
  State* s = state_.get();
  std::shared_ptr<Job> job;
  {
    std::unique_lock<std::mutex> lock(s->mu);
    RETURN_IF_ERROR(s->Schedule());
    if (s->pipeline.empty()) return std::shared_ptr<LoadedBatch>();  // evaluation is over
    job = s->pipeline.front();
    s->done_cv.wait(lock, [&] { return job->done; });
    s->pipeline.pop_front();
    RETURN_IF_ERROR(s->Schedule());
  }
  s->counters.Add(job->counters);
  BatchStorage* storage = job->storage.release();
  storage->batch.epoch = job->epoch;
  storage->batch.step = job->step;
  storage->batch.rows = job->rows;
  job.reset();
  std::shared_ptr<State> keep = state_;
  return std::shared_ptr<LoadedBatch>(&storage->batch, [keep, storage](LoadedBatch*) {
    keep->pool.Put(std::unique_ptr<BatchStorage>(storage));
  });
}

BadDataCounts StreamLoader::counts() const {
  const Counters& c = state_->counters;
  BadDataCounts out;
  out.samples = c.samples;
  out.replaced = c.replaced;
  out.unreplaceable = c.unreplaceable;
  out.bad_image = c.bad_image;
  out.bad_image_too_large = c.bad_image_too_large;
  out.bad_caption = c.bad_caption;
  out.bad_shard = c.bad_shard;
  std::lock_guard<std::mutex> lock(state_->counters.mu);
  for (const auto& [shard, n] : state_->counters.by_shard) {
    const auto& shards = state_->index->shards();
    out.bad_by_shard[shard >= 0 && shard < static_cast<int64_t>(shards.size())
                         ? shards[shard].path
                         : std::to_string(shard)] += n;
  }
  return out;
}

std::map<std::string, int64_t> BadDataCounts::ByName() const {
  return {{"samples", samples},
          {"replaced", replaced},
          {"bad_unreplaceable", unreplaceable},
          {"bad_image", bad_image},
          {"bad_image_too_large", bad_image_too_large},
          {"bad_caption", bad_caption},
          {"bad_shard", bad_shard}};
}

}  // namespace clipscale
