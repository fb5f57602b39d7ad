#include "agent/config_keys.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

namespace sluice {
namespace {

class Recorder final : public ConfigNode::KeyObserver {
 public:
  Recorder() : previous_(ConfigNode::observe_keys(this)) {}
  ~Recorder() { ConfigNode::observe_keys(previous_); }
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  void declared(std::string_view path, std::string_view key) override {
    auto it = index_.find(path);
    if (it == index_.end()) {
      it = index_.emplace(std::string(path), tables_.size()).first;
      tables_.push_back({std::string(path), {}});
      seen_.emplace_back();
    }
    if (seen_[it->second].emplace(key).second) tables_[it->second].keys.emplace_back(key);
  }

  std::vector<TableKeys> take() {
    for (auto& t : tables_) std::sort(t.keys.begin(), t.keys.end());
    return std::move(tables_);
  }

 private:
  ConfigNode::KeyObserver* previous_;
  std::map<std::string, std::size_t, std::less<>> index_;
  std::vector<TableKeys> tables_;
  std::vector<std::set<std::string, std::less<>>> seen_;
};

}  // namespace

std::vector<TableKeys> list_config_keys(const std::string& path, const Registry& registry,
                                        ConfigErrors& errors) {
  Recorder recorder;
  load_config(path, registry, errors);
  return recorder.take();
}

int print_config_keys(const std::string& path, const Registry& registry) {
  ConfigErrors errors;
  const std::vector<TableKeys> tables = list_config_keys(path, registry, errors);
  for (const auto& t : tables) {
    std::string line = (t.path.empty() ? std::string("(top level)") : t.path) + ":";
    for (const auto& k : t.keys) line += " " + k;
    std::printf("%s\n", line.c_str());
  }
  for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.str().c_str());
  return errors.empty() ? 0 : 2;
}

}  // namespace sluice
