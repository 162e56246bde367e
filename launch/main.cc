// The `tessera` command: flags -> typed options -> the job. The only place that maps a Status to
// an exit code (2: bad flags, config, input data, checkpoint or environment; 143: stopped by
// SIGTERM, after a checkpoint when there is a --checkpoint-dir; 3: a non-finite model, in training
// or in a checkpoint or export read; 1: anything else).

#include <cstdio>
#include <string>
#include <vector>

#include "core/auth.h"
#include "core/logging.h"
#include "core/message.h"
#include "launch/flags.h"
#include "launch/job.h"
#include "launch/launcher_env.h"
#include "worker/data/criteo_gen.h"
#include "worker/data/ctr_cache.h"
#include "worker/data/rating_gen.h"

namespace {

constexpr char kUsage[] =
    "usage: tessera <command> [options]\n"
    "\n"
    "commands:\n"
    "  train         train a model (no options: a demo on generated data, in one process;\n"
    "                under mpirun/srun the role comes from the rank)\n"
    "  gen ratings   write a planted low-rank rating set (train.txt, test.txt, truth.json)\n"
    "  gen criteo    write a planted click log in Criteo format (train.tsv, test.tsv, truth.json)\n"
    "  convert       turn a CTR text file into a binary cache that reads several times faster\n"
    "  export        turn a checkpoint into .npy (or text) files and a model.json\n"
    "  recommend     top-K items for users, from an MF export\n"
    "  keygen        write a job secret for --auth-key (a new file, readable by its owner only)\n"
    "\n"
    "`tessera <command> --help` lists a command's options.\n";

int ExitCodeFor(const tessera::Status& s) {
  switch (s.code()) {
    case tessera::StatusCode::kOk:
      return 0;
    case tessera::StatusCode::kInvalidArgument:
    case tessera::StatusCode::kNotFound:
    case tessera::StatusCode::kFailedPrecondition:
    case tessera::StatusCode::kOutOfRange:
    case tessera::StatusCode::kAlreadyExists:
    case tessera::StatusCode::kDataLoss:
      return 2;
    case tessera::StatusCode::kCancelled:
      return 143;
    case tessera::StatusCode::kNonFinite:
      return 3;
    default:
      return 1;
  }
}

int Finish(const tessera::Status& s) {
  if (!s.ok()) std::fprintf(stderr, "tessera: error: %s\n", s.message().c_str());
  return ExitCodeFor(s);
}

int Report(const tessera::launch::ParseOutcome& outcome) {
  if (outcome.exit_code == 0) {
    std::fputs(outcome.text.c_str(), stdout);
  } else {
    std::fprintf(stderr, "tessera: error: %s\n", outcome.text.c_str());
  }
  return outcome.exit_code;
}

int Train(const std::vector<std::string>& args) {
  tessera::launch::TrainOptions options;
  auto outcome = tessera::launch::ParseTrainOptions(args, &options);
  if (!outcome.run) return Report(outcome);
  tessera::logging::SetVerbosity(options.verbosity);
  const tessera::launch::LaunchEnv env = tessera::launch::DetectLaunchEnv();
  if (env.under_mpi) {
    bool reported = false;
    const tessera::Status s = tessera::launch::RunTrainMpi(options, env, &reported);
    return reported ? ExitCodeFor(s) : Finish(s);
  }
  return Finish(tessera::launch::RunTrainInProcess(options, env));
}

int GenRatings(const std::vector<std::string>& args) {
  tessera::worker::RatingGenOptions options;
  std::string out_dir;
  auto outcome = tessera::launch::ParseGenRatingsOptions(args, &options, &out_dir);
  if (!outcome.run) return Report(outcome);
  return Finish(tessera::worker::GenerateRatings(options, out_dir));
}

int GenCriteo(const std::vector<std::string>& args) {
  tessera::worker::CriteoGenOptions options;
  std::string out_dir;
  auto outcome = tessera::launch::ParseGenCriteoOptions(args, &options, &out_dir);
  if (!outcome.run) return Report(outcome);
  return Finish(tessera::worker::GenerateCriteo(options, out_dir));
}

int Convert(const std::vector<std::string>& args) {
  tessera::worker::CtrReadOptions read;
  std::string input, output;
  auto outcome = tessera::launch::ParseConvertOptions(args, &read, &input, &output);
  if (!outcome.run) return Report(outcome);
  return Finish(tessera::worker::WriteCtrCache(input, read, output));
}

int Export(const std::vector<std::string>& args) {
  tessera::launch::ExportOptions options;
  auto outcome = tessera::launch::ParseExportOptions(args, &options);
  if (!outcome.run) return Report(outcome);
  return Finish(tessera::launch::ExportCheckpoint(options));
}

int Recommend(const std::vector<std::string>& args) {
  tessera::launch::RecommendOptions options;
  auto outcome = tessera::launch::ParseRecommendOptions(args, &options);
  if (!outcome.run) return Report(outcome);
  return Finish(tessera::launch::Recommend(options, stdout));
}

int Keygen(const std::vector<std::string>& args) {
  std::string out;
  auto outcome = tessera::launch::ParseKeygenOptions(args, &out);
  if (!outcome.run) return Report(outcome);
  auto secret = tessera::auth::GenerateSecret();
  if (!secret.ok()) return Finish(secret.status());
  const tessera::Status s = tessera::auth::WriteKeyFile(out, *secret);
  if (s.ok())
    std::printf("wrote a job secret to %s (mode 0600): pass it as --auth-key\n", out.c_str());
  return Finish(s);
}

}  // namespace

int main(int argc, char** argv) {
  tessera::KeepLargeBuffersInHeap();
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  const std::string command = args[0];
  if (command == "train") return Train({args.begin() + 1, args.end()});
  if (command == "convert") return Convert({args.begin() + 1, args.end()});
  if (command == "export") return Export({args.begin() + 1, args.end()});
  if (command == "recommend") return Recommend({args.begin() + 1, args.end()});
  if (command == "keygen") return Keygen({args.begin() + 1, args.end()});
  if (command == "gen") {
    if (args.size() >= 2 && args[1] == "ratings") return GenRatings({args.begin() + 2, args.end()});
    if (args.size() >= 2 && args[1] == "criteo") return GenCriteo({args.begin() + 2, args.end()});
    std::fprintf(stderr, "tessera: error: `tessera gen` needs a kind: ratings | criteo\n");
    return 2;
  }
  std::fprintf(stderr, "tessera: error: unknown command '%s'\n%s", command.c_str(), kUsage);
  return 2;
}
