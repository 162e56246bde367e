// The INI --config files (launch/flags.h) of every command that takes one: the input is the file,
// parsed with the command's flag set (Boost.Program_options plus Tessera's section and
// unknown-option rules) and validated. The outcome is either options to run with or exit status
// 2 with a message; never an exception, a crash or a hang.
//
// Input: one byte choosing the command (train, convert, export, recommend), then the file.
#include <string>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "launch/flags.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tessera::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera::launch;
  if (size < 1) return 0;
  const std::vector<std::string> args = {"--config", tessera::fuzz::InputFile(data + 1, size - 1)};
  ParseOutcome outcome;
  switch (data[0] % 4) {
    case 0: {
      TrainOptions options;
      outcome = ParseTrainOptions(args, &options);
      break;
    }
    case 1: {
      tessera::worker::CtrReadOptions read;
      std::string input, output;
      outcome = ParseConvertOptions(args, &read, &input, &output);
      break;
    }
    case 2: {
      ExportOptions options;
      outcome = ParseExportOptions(args, &options);
      break;
    }
    default: {
      RecommendOptions options;
      outcome = ParseRecommendOptions(args, &options);
      break;
    }
  }
  if (!outcome.run) {
    TS_FUZZ_CHECK(outcome.exit_code == 2 || outcome.exit_code == 0);
    TS_FUZZ_CHECK(!outcome.text.empty());
  }
  return 0;
}
