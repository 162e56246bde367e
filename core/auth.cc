#include "core/auth.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/logging.h"

namespace tessera::auth {
namespace {

constexpr char kMagic[] = "tessera-job-key-1 ";
constexpr size_t kMagicBytes = sizeof(kMagic) - 1;
constexpr size_t kFileBytes = kMagicBytes + 2 * kKeyBytes + 1;  // + hex + '\n'
// crypto_kdf context: 8 bytes naming what the subkeys are for.
constexpr char kKdfContext[crypto_kdf_CONTEXTBYTES + 1] = "tsnodeK1";

Status InitSodium() {
  if (sodium_init() < 0) return Status::Internal("libsodium could not be initialised");
  return OkStatus();
}

std::string Errno() { return std::strerror(errno); }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Writes all of `bytes` to fd.
bool WriteAll(int fd, const char* bytes, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, bytes, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    bytes += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

StatusOr<JobSecret> GenerateSecret() {
  TS_RETURN_IF_ERROR(InitSodium());
  JobSecret secret;
  randombytes_buf(secret.bytes.data(), secret.bytes.size());
  return secret;
}

Status WriteKeyFile(const std::string& path, const JobSecret& secret) {
  if (path.empty()) return Status::InvalidArgument("empty key file name");
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    return Status::AlreadyExists(path + " exists; keygen never replaces a file (remove it first)");
  }
  std::string text(kMagic);
  static const char kHex[] = "0123456789abcdef";
  for (uint8_t b : secret.bytes) {
    text += kHex[b >> 4];
    text += kHex[b & 15];
  }
  text += '\n';
  // The temporary file is created 0600 (O_EXCL: never someone else's file), then linked to
  // the target name: link() fails if the target appeared meanwhile, so nothing is replaced.
  const std::string tmp = path + ".tmp-" + std::to_string(getpid());
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Status::Unavailable("cannot create " + tmp + ": " + Errno());
  const bool written =
      fchmod(fd, 0600) == 0 && WriteAll(fd, text.data(), text.size()) && fsync(fd) == 0;
  const std::string write_error = written ? "" : Errno();
  sodium_memzero(text.data(), text.size());
  if (close(fd) != 0 || !written) {
    unlink(tmp.c_str());
    return Status::Unavailable("cannot write " + tmp + ": " + write_error);
  }
  if (link(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    if (err == EEXIST) {
      return Status::AlreadyExists(path +
                                   " exists; keygen never replaces a file (remove it first)");
    }
    return Status::Unavailable("cannot create " + path + ": " + std::strerror(err));
  }
  unlink(tmp.c_str());
  return OkStatus();
}

StatusOr<JobSecret> ReadKeyFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound("--auth-key " + path + ": no such file");
    return Status::InvalidArgument("--auth-key " + path + ": cannot open: " + Errno());
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return Status::InvalidArgument("--auth-key " + path + ": not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    close(fd);
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::InvalidArgument("--auth-key " + path + ": mode " + mode +
                                   " lets group or others read or write the job secret; "
                                   "chmod 600 it (or write a new one with tessera keygen)");
  }
  if (st.st_uid != geteuid()) {
    close(fd);
    return Status::InvalidArgument("--auth-key " + path + ": owned by uid " +
                                   std::to_string(st.st_uid) + ", not by this user");
  }
  char buf[kFileBytes + 1];
  size_t n = 0;
  while (n < sizeof(buf)) {
    ssize_t r = read(fd, buf + n, sizeof(buf) - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += static_cast<size_t>(r);
  }
  close(fd);
  const Status bad_format = Status::InvalidArgument(
      "--auth-key " + path + ": not a Tessera key file (expected one line \"" +
      std::string(kMagic, kMagicBytes - 1) + " <64 hex digits>\", as tessera keygen writes)");
  if (n != kFileBytes || std::memcmp(buf, kMagic, kMagicBytes) != 0 || buf[n - 1] != '\n') {
    sodium_memzero(buf, sizeof(buf));
    return bad_format;
  }
  JobSecret secret;
  for (size_t i = 0; i < kKeyBytes; ++i) {
    const int hi = HexValue(buf[kMagicBytes + 2 * i]);
    const int lo = HexValue(buf[kMagicBytes + 2 * i + 1]);
    if (hi < 0 || lo < 0) {
      sodium_memzero(buf, sizeof(buf));
      return bad_format;
    }
    secret.bytes[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  sodium_memzero(buf, sizeof(buf));
  return secret;
}

KeyPair NodeKeyPair(const JobSecret& secret, const NodeId& node) {
  TS_CHECK(sodium_init() >= 0) << "libsodium could not be initialised";
  static_assert(crypto_kdf_KEYBYTES == kKeyBytes && crypto_scalarmult_BYTES == kKeyBytes &&
                crypto_scalarmult_SCALARBYTES == kKeyBytes);
  // Subkey id: role in the high half, rank in the low half (distinct for every node).
  const uint64_t subkey_id =
      (static_cast<uint64_t>(node.role) << 32) | static_cast<uint32_t>(node.rank);
  KeyPair pair;
  crypto_kdf_derive_from_key(pair.secret_key.data(), pair.secret_key.size(), subkey_id, kKdfContext,
                             secret.bytes.data());
  TS_CHECK(crypto_scalarmult_base(pair.public_key.data(), pair.secret_key.data()) == 0);
  return pair;
}

std::string Z85(const Key& key) {
  char text[41];
  TS_CHECK(zmq_z85_encode(text, key.data(), key.size()) != nullptr);
  return std::string(text, 40);
}

}  // namespace tessera::auth
