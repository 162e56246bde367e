// The checkpoint row file reader (core/row_file.h): the input is a row file, opened against a
// manifest entry made from its own header, size and CRC-32 (so the fuzzer reaches the rows), or
// an entry with one field off (so the refusals are reached). Rows are read as the server's
// restore and the export read them. A header the reader accepts never announces more bytes than
// the file holds, and the rows then read to the end with the CRC-32 checked.
//
// Input: one byte choosing the entry (0: matching; 1..5: CRC-32, size, rows, table or slot range
// off by one), then the file's bytes.
#include <cstring>
#include <vector>

#include "core/row_file.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tessera::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  using checkpoint::RowFileHeader;
  if (size < 1) return 0;
  const uint8_t which = data[0] % 6;
  const uint8_t* file = data + 1;
  const size_t file_size = size - 1;
  RowFileHeader header;
  if (file_size >= sizeof(header)) std::memcpy(&header, file, sizeof(header));

  proto::CheckpointFile entry;
  entry.set_name("fuzz.rows");
  entry.set_kind(proto::CheckpointFile::KIND_ROWS);
  entry.set_size_bytes(file_size + (which == 2));
  entry.set_crc32(checkpoint::Crc32(file, file_size) + (which == 1));
  entry.set_num_rows(header.num_rows + (which == 3));
  entry.set_table_id(header.table_id + (which == 4));
  entry.set_slot_begin(header.slot_begin);
  entry.set_slot_end(header.slot_end + (which == 5));

  const std::string& dir = fuzz::ScratchDir();
  fuzz::WriteFile(dir + "/" + entry.name(), file, file_size);
  StatusOr<std::unique_ptr<checkpoint::RowFileReader>> reader =
      checkpoint::RowFileReader::Open(Env::Default(), dir, entry);
  if (!reader.ok()) return 0;
  TS_FUZZ_CHECK(which == 0 || which == 1);  // an entry that does not match the file is refused
  const RowFileHeader& h = (*reader)->header();
  const uint64_t row_floats = uint64_t{h.dim} + h.state_floats;
  const uint64_t row_bytes = sizeof(uint64_t) + sizeof(float) * row_floats;
  // The header's rows fit in the file (no wrap-around in rows x row size).
  TS_FUZZ_CHECK(h.num_rows <= (file_size - sizeof(RowFileHeader)) / row_bytes);
  std::vector<float> row(h.num_rows > 0 ? row_floats : 0);
  for (uint64_t i = 0; i < h.num_rows; ++i) {
    uint64_t key = 0;
    TS_FUZZ_CHECK((*reader)->Next(&key, row.data()).ok());
  }
  TS_FUZZ_CHECK((*reader)->Finish().ok() == (which == 0));
  return 0;
}
