#include "lib/config/secret.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace sluice {

namespace {

constexpr std::size_t kMaxSecretBytes = 64 * 1024;

// Reads a whole small file; an error names the path and errno, never any content.
bool read_small_file(const std::string& path, std::string& out, std::string& err) {
  // O_NONBLOCK: a FIFO without a writer must not hang the configuration load (it is refused).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    err = "cannot read secret file '" + path + "': " + std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    err = "secret file '" + path + "' is not a regular file";
    ::close(fd);
    return false;
  }
  out.clear();
  out.reserve(kMaxSecretBytes + 1);  // never reallocated: no copy of the secret left in freed heap
  char buf[4096];
  struct Wipe {
    char* p;
    ~Wipe() {
      volatile char* v = p;
      for (std::size_t i = 0; i < 4096; ++i) v[i] = 0;
    }
  } wipe{buf};
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = "cannot read secret file '" + path + "': " + std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > kMaxSecretBytes) {
      err = "secret file '" + path + "' is larger than 64 KiB";
      ::close(fd);
      return false;
    }
  }
  ::close(fd);
  if (!out.empty() && out.back() == '\n') out.pop_back();
  if (!out.empty() && out.back() == '\r') out.pop_back();
  return true;
}

}  // namespace

Secret::~Secret() {
  // Do not leave the credential in freed heap memory.
  volatile char* p = value_.data();
  for (std::size_t i = 0; i < value_.size(); ++i) p[i] = 0;
}

bool read_secret(const ConfigNode& node, std::string_view key, Secret& out, ConfigErrors& errors,
                 bool required) {
  node.mark_known(key);
  const toml::node* n = node.table().get(key);
  if (n == nullptr) {
    if (required) node.error(errors, "missing required key '" + std::string(key) + "'");
    return !required;
  }
  if (const auto* s = n->as_string()) {
    if (s->get().empty()) {
      node.error_at(key, errors, "is empty");
      return false;
    }
    out = Secret(s->get(), "inline");
    return true;
  }
  const auto* t = n->as_table();
  if (t == nullptr) {
    node.error_at(key, errors, "expected a string, { env = \"NAME\" } or { file = \"/path\" }");
    return false;
  }
  const std::size_t before = errors.size();
  ConfigNode sub(*t, node.path().empty() ? std::string(key) : node.path() + "." + std::string(key),
                 node.file());
  std::string env, file;
  sub.optional("env", env, errors);
  sub.optional("file", file, errors);
  sub.reject_unknown_keys(errors);
  if (errors.size() != before) return false;
  if (env.empty() == file.empty()) {
    node.error_at(key, errors, "give exactly one of env = \"NAME\" or file = \"/path\"");
    return false;
  }
  if (!env.empty()) {
    const char* v = std::getenv(env.c_str());
    if (v == nullptr || *v == '\0') {
      sub.error_at("env", errors,
                   "environment variable '" + env + (v == nullptr ? "' is not set" : "' is empty"));
      return false;
    }
    out = Secret(v, "env " + env);
    return true;
  }
  std::string value, err;
  if (!read_small_file(file, value, err)) {
    sub.error_at("file", errors, std::move(err));
    return false;
  }
  if (value.empty()) {
    sub.error_at("file", errors, "secret file '" + file + "' is empty");
    return false;
  }
  out = Secret(std::move(value), "file " + file);
  return true;
}

}  // namespace sluice
