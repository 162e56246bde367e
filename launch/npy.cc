#include "launch/npy.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>

namespace tessera::launch {
namespace {

constexpr char kMagic[] = "\x93NUMPY";

// "(3,)" for one dimension, "(3, 4)" for two, as Python writes tuples.
std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    s += std::to_string(shape[i]);
    if (shape.size() == 1) s += ",";
    if (i + 1 < shape.size()) s += ", ";
  }
  return s + ")";
}

Status Write(const std::string& path, const char* descr, const void* data, size_t elem_bytes,
             const std::vector<int64_t>& shape) {
  std::string header = std::string("{'descr': '") + descr +
                       "', 'fortran_order': False, 'shape': " + ShapeText(shape) + ", }";
  // magic (6) + version (2) + header length (2) + header, padded to a multiple of 64.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "wb"), std::fclose);
  if (!f) return Status::Unavailable("cannot create " + path + ": " + std::strerror(errno));
  size_t count = 1;
  for (int64_t d : shape) count *= static_cast<size_t>(d);
  const uint16_t header_len = static_cast<uint16_t>(header.size());
  const unsigned char version[2] = {1, 0};
  bool ok = std::fwrite(kMagic, 1, 6, f.get()) == 6 && std::fwrite(version, 1, 2, f.get()) == 2 &&
            std::fwrite(&header_len, 2, 1, f.get()) == 1 &&
            std::fwrite(header.data(), 1, header.size(), f.get()) == header.size() &&
            (count == 0 || std::fwrite(data, elem_bytes, count, f.get()) == count);
  ok = std::fflush(f.get()) == 0 && ok;
  ok = std::fclose(f.release()) == 0 && ok;
  if (!ok) return Status::Unavailable("cannot write " + path + ": " + std::strerror(errno));
  return OkStatus();
}

template <typename T>
Status Read(const std::string& path, const char* descr, std::vector<T>* data,
            std::vector<int64_t>* shape) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read " + path);
  char magic[6];
  unsigned char version[2];
  if (!in.read(magic, 6) || std::memcmp(magic, kMagic, 6) != 0 ||
      !in.read(reinterpret_cast<char*>(version), 2)) {
    return Status::DataLoss(path + " is not a .npy file");
  }
  uint32_t header_len = 0;
  if (version[0] == 1) {
    uint16_t len16 = 0;
    in.read(reinterpret_cast<char*>(&len16), 2);
    header_len = len16;
  } else {
    in.read(reinterpret_cast<char*>(&header_len), 4);
  }
  // The length comes from the file: bound it by the file's size before allocating (a version 2
  // header may claim 4 GiB; fuzz/corpus/fuzz_npy/version2_huge_header_len).
  struct stat st;
  if (!in || stat(path.c_str(), &st) != 0 || header_len > static_cast<uint64_t>(st.st_size)) {
    return Status::DataLoss(path + ": truncated .npy header");
  }
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) {
    return Status::DataLoss(path + ": truncated .npy header");
  }
  if (header.find(std::string("'descr': '") + descr + "'") == std::string::npos ||
      header.find("'fortran_order': False") == std::string::npos) {
    return Status::DataLoss(path + ": expected a C-order array of " + descr + ", header is " +
                            header);
  }
  const size_t open = header.find("'shape': (");
  const size_t close = header.find(')', open);
  if (open == std::string::npos || close == std::string::npos) {
    return Status::DataLoss(path + ": no shape in the .npy header");
  }
  shape->clear();
  uint64_t count = 1;
  const std::string dims = header.substr(open + 10, close - open - 10);
  for (size_t i = 0; i < dims.size();) {
    while (i < dims.size() && (dims[i] == ' ' || dims[i] == ',')) ++i;
    if (i == dims.size()) break;
    uint64_t d = 0;
    size_t digits = 0;
    for (; i < dims.size() && dims[i] >= '0' && dims[i] <= '9' && digits < 18; ++i, ++digits) {
      d = d * 10 + static_cast<uint64_t>(dims[i] - '0');
    }
    if (digits == 0 || (i < dims.size() && dims[i] != ',' && dims[i] != ' ')) {
      return Status::DataLoss(path + ": bad shape (" + dims + ") in the .npy header");
    }
    if (d != 0 && count > (uint64_t{1} << 40) / d) {
      return Status::DataLoss(path + ": shape (" + dims + ") is too large");
    }
    shape->push_back(static_cast<int64_t>(d));
    count *= d;
  }
  if (static_cast<uint64_t>(st.st_size) < count * sizeof(T)) {
    return Status::DataLoss(path + ": holds fewer values than its shape says");
  }
  data->resize(count);
  if (count > 0 && !in.read(reinterpret_cast<char*>(data->data()),
                            static_cast<std::streamsize>(count * sizeof(T)))) {
    return Status::DataLoss(path + ": holds fewer values than its shape says");
  }
  return OkStatus();
}

}  // namespace

Status WriteNpy(const std::string& path, const uint64_t* data, const std::vector<int64_t>& shape) {
  return Write(path, "<u8", data, sizeof(uint64_t), shape);
}
Status WriteNpy(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  return Write(path, "<f4", data, sizeof(float), shape);
}
Status ReadNpy(const std::string& path, std::vector<uint64_t>* data, std::vector<int64_t>* shape) {
  return Read(path, "<u8", data, shape);
}
Status ReadNpy(const std::string& path, std::vector<float>* data, std::vector<int64_t>* shape) {
  return Read(path, "<f4", data, shape);
}

}  // namespace tessera::launch
