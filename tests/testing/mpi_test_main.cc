// main() of the GoogleTest binaries run under mpirun (as gtest_main is of the others): every rank
// runs every test; rank 0 prints gtest's full output, the other ranks only their failed
// assertions, prefixed with the rank. The exit status is the worst of all ranks, or
// kSkipReturnCode when every test skipped itself on every rank.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

#include "tests/testing/mpi_test_util.h"

namespace tessera::testing {
namespace {

// The exit status that tells ctest (SKIP_RETURN_CODE) that every selected test skipped itself.
constexpr int kSkipReturnCode = 77;

// Prints failed assertions of ranks other than 0 (whose full output comes from gtest's default
// printer), prefixed with the rank.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: %s\n", rank_, result.file_name(), result.line_number(),
                 result.summary());
  }

 private:
  int rank_;
};

}  // namespace
}  // namespace tessera::testing

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  ::testing::InitGoogleTest(&argc, argv);
  const int rank = tessera::testing::WorldRank();
  if (rank != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new tessera::testing::RankFailurePrinter(rank));
  }
  const int local = RUN_ALL_TESTS();
  int worst = 0;
  MPI_Allreduce(&local, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  const ::testing::UnitTest& unit = *::testing::UnitTest::GetInstance();
  const int local_skipped =
      unit.test_to_run_count() > 0 && unit.skipped_test_count() == unit.test_to_run_count();
  int all_skipped = 0;
  MPI_Allreduce(&local_skipped, &all_skipped, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  MPI_Finalize();
  if (worst == 0 && all_skipped) return tessera::testing::kSkipReturnCode;
  return worst;
}
