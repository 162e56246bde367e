#include "worker/data/ctr_reader.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "core/logging.h"
#include "worker/data/ctr_cache_format.h"
#include "worker/data/internal/ctr_text_parse.h"
#include "worker/data/internal/text_chunks.h"

namespace tessera::worker {
namespace {

using internal::ByteOrderMarkLength;
using internal::ChunkParser;
using internal::ChunkResult;
using internal::CountFeatures;
using internal::DescribeBadLine;
using internal::DetectTextFormat;
using internal::EstimateLines;
using internal::FeatureCounts;
using internal::FieldSalt;
using internal::FileBytes;
using internal::kCriteoColumns;
using internal::LineEnd;
using internal::LineStartAtOrAfter;
using internal::ParseContext;
using internal::ParserFor;
using internal::Reason;
using internal::RunChunks;
using internal::SplitAtLineStarts;
using internal::SplitPoint;

// Below this many bytes per thread a chunk is parsed by fewer threads (starting one costs more).
constexpr size_t kMinChunkBytesPerThread = 64 << 10;
// Multi-hot offsets are uint32: a chunk of at most 8 GiB holds fewer than 2^31 keys (a feature
// token and its separator take at least 4 bytes).
constexpr size_t kMaxMultiHotChunkBytes = size_t{8} << 30;
// Salts of fields below this are precomputed.
constexpr uint32_t kPrecomputedSalts = 1024;

Status ValidateOptions(const CtrReadOptions& o) {
  if (o.format != CtrFormat::kAuto && o.format != CtrFormat::kCriteo &&
      o.format != CtrFormat::kLibsvm && o.format != CtrFormat::kLibffm &&
      o.format != CtrFormat::kCache) {
    return Status::InvalidArgument("unknown CTR format");
  }
  TS_RETURN_IF_ERROR(
      internal::ValidateThreadsAndPartition(o.num_threads, o.partition, o.num_partitions));
  if (o.chunk_bytes < 1) return Status::InvalidArgument("chunk_bytes must be >= 1");
  return OkStatus();
}

}  // namespace

// --- CtrReader -------------------------------------------------------------------------------

struct CtrReader::Impl {
  std::string path;
  CtrReadOptions options;
  std::unique_ptr<FileBytes> file;
  // Text.
  ParseContext ctx;
  ChunkParser parse = nullptr;
  // Per-thread blocks reused across Next calls: text parser threads k >= 1 (thread 0 parses
  // into the caller's block), multi-hot cache readers k >= 0.
  std::vector<CtrBlock> scratch;
  // Cache: its records, checked block by block as they are read.
  std::unique_ptr<CtrCacheView> cache;
};

CtrReader::CtrReader() : impl_(std::make_unique<Impl>()) {}
CtrReader::~CtrReader() = default;

StatusOr<std::unique_ptr<CtrReader>> CtrReader::Open(const std::string& path,
                                                     const CtrReadOptions& options) {
  TS_RETURN_IF_ERROR(ValidateOptions(options));
  std::unique_ptr<CtrReader> reader(new CtrReader());
  Impl& impl = *reader->impl_;
  impl.path = path;
  impl.options = options;
  TS_ASSIGN_OR_RETURN(impl.file, FileBytes::Open(path));
  const char* data = impl.file->data();  // replaced below for a CR-only text file
  const size_t size = impl.file->size();
  const size_t num_partitions = static_cast<size_t>(options.num_partitions);
  const size_t partition = static_cast<size_t>(options.partition);
  CtrSchema& schema = reader->schema_;

  CtrFormat format = options.format;
  if (format == CtrFormat::kCache || (format == CtrFormat::kAuto && HasCtrCacheMagic(data, size))) {
    TS_ASSIGN_OR_RETURN(CtrCacheView view, CtrCacheView::Open(path, data, size));
    const CtrCacheHeader header = view.header();
    TS_RETURN_IF_ERROR(
        CheckCtrCacheOptions(path, header, options.hash_seed, options.bucketize_integers));
    schema.format = CtrFormat::kCache;
    schema.source_format = header.source_format;
    schema.num_dense = static_cast<int>(header.num_dense);
    schema.num_fields = static_cast<int>(header.num_fields);
    schema.multi_hot = header.multi_hot;
    schema.max_keys = static_cast<int>(header.keys_per_record);
    schema.hash_seed = header.hash_seed;
    schema.bucketize_integers = header.bucketize_integers;
    schema.num_rows = static_cast<int64_t>(header.num_records);
    impl.cache = std::make_unique<CtrCacheView>(std::move(view));
    const size_t n = header.num_records;
    reader->begin_ = static_cast<int64_t>(SplitPoint(n, partition, num_partitions));
    reader->end_ = static_cast<int64_t>(SplitPoint(n, partition + 1, num_partitions));
    reader->position_ = reader->begin_;
    return reader;
  }

  impl.file->ReadCrOnlyLineEnds();
  data = impl.file->data();
  const size_t body = ByteOrderMarkLength(data, size);
  if (format == CtrFormat::kAuto) format = DetectTextFormat(data + body, data + size);
  schema.format = format;
  schema.source_format = format;
  schema.hash_seed = options.hash_seed;
  if (format == CtrFormat::kCriteo) {
    schema.num_dense = kCriteoDense;
    schema.bucketize_integers = options.bucketize_integers;
    schema.num_fields = kCriteoCategorical + (options.bucketize_integers ? kCriteoDense : 0);
    schema.max_keys = schema.num_fields;
  } else {
    // The one-hot/multi-hot decision over the whole file, so that every partition makes it alike.
    const size_t num_chunks = std::clamp<size_t>(size / kMinChunkBytesPerThread, 1,
                                                 static_cast<size_t>(options.num_threads));
    const std::vector<size_t> bounds = SplitAtLineStarts(data, size, body, size, num_chunks);
    std::vector<FeatureCounts> counts(num_chunks);
    RunChunks(num_chunks, "scanning " + path,
              [&](size_t k) { counts[k] = CountFeatures(data + bounds[k], data + bounds[k + 1]); });
    FeatureCounts all;
    for (const FeatureCounts& c : counts) {
      all.lines += c.lines;
      if (c.lines > 0) {
        all.min = std::min(all.min, c.min);
        all.max = std::max(all.max, c.max);
      }
    }
    if (all.lines > 0 && all.max > std::numeric_limits<int32_t>::max() / 16) {
      return Status::InvalidArgument(path + ": a line has " + std::to_string(all.max) +
                                     " features; too many");
    }
    schema.multi_hot = all.lines > 0 && all.min != all.max;
    schema.max_keys = static_cast<int>(all.max);
    schema.num_fields = schema.multi_hot ? 1 : static_cast<int>(all.max);
  }

  impl.ctx.schema = schema;
  impl.ctx.skip_bad_lines = options.skip_bad_lines;
  const uint32_t num_salts =
      std::max<uint32_t>(kPrecomputedSalts, static_cast<uint32_t>(schema.num_fields));
  impl.ctx.salts.resize(num_salts);
  for (uint32_t f = 0; f < num_salts; ++f) impl.ctx.salts[f] = FieldSalt(options.hash_seed, f);
  impl.parse = ParserFor(format, schema.multi_hot);
  impl.scratch.resize(static_cast<size_t>(options.num_threads));

  // This partition's lines: those starting in [SplitPoint(p), SplitPoint(p + 1)).
  size_t begin = LineStartAtOrAfter(data, size, SplitPoint(size, partition, num_partitions));
  const size_t end =
      LineStartAtOrAfter(data, size, SplitPoint(size, partition + 1, num_partitions));
  if (begin == 0) begin = std::min(body, end);
  reader->begin_ = static_cast<int64_t>(begin);
  reader->end_ = static_cast<int64_t>(end);
  reader->position_ = reader->begin_;
  return reader;
}

StatusOr<bool> CtrReader::Next(CtrBlock* block) {
  TS_CHECK(block != nullptr);
  return schema_.format == CtrFormat::kCache ? NextCache(block) : NextText(block);
}

StatusOr<bool> CtrReader::NextText(CtrBlock* block) {
  Impl& impl = *impl_;
  const char* data = impl.file->data();
  const size_t size = impl.file->size();
  const bool multi_hot = schema_.multi_hot;
  size_t chunk_bytes = impl.options.chunk_bytes;
  if (multi_hot) chunk_bytes = std::min(chunk_bytes, kMaxMultiHotChunkBytes);
  const size_t min_line_bytes = schema_.format == CtrFormat::kCriteo ? kCriteoColumns : 2;

  block->Clear();
  if (multi_hot) block->offsets.push_back(0);
  while (position_ < end_) {
    const size_t begin = static_cast<size_t>(position_);
    const size_t end =
        std::min(static_cast<size_t>(end_),
                 LineStartAtOrAfter(data, size, begin + std::min(chunk_bytes, size - begin)));
    const size_t num_chunks =
        std::clamp<size_t>((end - begin) / kMinChunkBytesPerThread, 1, impl.scratch.size());
    const std::vector<size_t> bounds = SplitAtLineStarts(data, size, begin, end, num_chunks);
    std::vector<ChunkResult> results(num_chunks);
    RunChunks(num_chunks, "parsing " + impl.path, [&](size_t k) {
      // Each thread works on a local block: the blocks' vector headers are neighbours in memory
      // and updating them in place on every line would bounce cache lines between cores.
      // Chunk 0 goes straight into *block, reserving room for the whole chunk.
      CtrBlock& target = k == 0 ? *block : impl.scratch[k];
      CtrBlock local = std::move(target);
      if (k > 0) {
        local.Clear();
        if (multi_hot) local.offsets.push_back(0);
      }
      size_t reserve = EstimateLines(data + bounds[k], data + bounds[k == 0 ? num_chunks : k + 1],
                                     min_line_bytes);
      ChunkResult result;
      impl.parse(impl.ctx, data + bounds[k], data + bounds[k + 1], reserve, &local, &result);
      target = std::move(local);
      results[k] = result;
    });

    // Chunks are in file order, so the first chunk with a bad line holds the first bad line.
    int64_t bad_lines = 0;
    std::string first_bad;
    for (const ChunkResult& r : results) {
      bad_lines += r.bad_lines;
      if (r.first_bad != nullptr && first_bad.empty()) {
        const char* le = LineEnd(r.first_bad, data + size);
        first_bad = DescribeBadLine(
            impl.path, data, data + size, r.first_bad,
            Reason(schema_.format, r.first_error, r.first_bad, le, schema_.num_fields));
      }
    }
    if (bad_lines > 0 && !impl.options.skip_bad_lines) {
      block->Clear();
      return Status::InvalidArgument(first_bad);
    }
    bad_lines_ += bad_lines;
    if (first_bad_line_.empty()) first_bad_line_ = std::move(first_bad);
    for (size_t k = 1; k < num_chunks; ++k) AppendCtrBlock(impl.scratch[k], multi_hot, block);
    position_ = static_cast<int64_t>(end);
    if (block->size() > 0) return true;
  }
  return false;
}

StatusOr<bool> CtrReader::NextCache(CtrBlock* block) {
  Impl& impl = *impl_;
  const uint64_t per_chunk =
      std::max<uint64_t>(1, impl.options.chunk_bytes / impl.cache->header().RecordBytes());
  const uint64_t n = std::min<uint64_t>(per_chunk, static_cast<uint64_t>(end_ - position_));
  TS_RETURN_IF_ERROR(impl.cache->Read(static_cast<uint64_t>(position_), n, impl.options.num_threads,
                                      &impl.scratch, block));
  position_ += static_cast<int64_t>(n);
  return n > 0;
}

StatusOr<CtrBlock> CtrReader::ReadAll(const std::string& path, const CtrReadOptions& options,
                                      CtrSchema* schema) {
  CtrReadOptions one_chunk = options;
  one_chunk.chunk_bytes = std::numeric_limits<size_t>::max();
  TS_ASSIGN_OR_RETURN(std::unique_ptr<CtrReader> reader, Open(path, one_chunk));
  if (schema != nullptr) *schema = reader->schema();
  const bool multi_hot = reader->schema().multi_hot;
  CtrBlock all;
  if (multi_hot) all.offsets.push_back(0);
  CtrBlock block;
  for (;;) {
    TS_ASSIGN_OR_RETURN(bool more, reader->Next(&block));
    if (!more) break;
    if (multi_hot && all.keys.size() + block.keys.size() > std::numeric_limits<uint32_t>::max()) {
      return Status::InvalidArgument(path + " holds more than 2^32 keys; read it in chunks");
    }
    if (all.size() == 0) {
      all = std::move(block);
      block = CtrBlock();
    } else {
      AppendCtrBlock(block, multi_hot, &all);
    }
  }
  if (reader->bad_lines() > 0) {
    TS_LOG(WARNING) << "skipped " << reader->bad_lines() << " bad lines in " << path
                    << "; the first: " << reader->first_bad_line();
  }
  return all;
}

Status CtrReader::Seek(int64_t position) {
  if (position < begin_ || position > end_) {
    return Status::InvalidArgument("position " + std::to_string(position) +
                                   " is outside this partition [" + std::to_string(begin_) + ", " +
                                   std::to_string(end_) + "] of " + impl_->path);
  }
  if (schema_.format != CtrFormat::kCache && position != begin_ && position != end_ &&
      impl_->file->data()[position - 1] != '\n') {
    return Status::InvalidArgument("position " + std::to_string(position) + " of " + impl_->path +
                                   " is not at a line start");
  }
  position_ = position;
  return OkStatus();
}

}  // namespace tessera::worker
