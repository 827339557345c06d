// poscache-writer run as a child process, for the daemon tests: a scratch directory, a daemon
// in the background with its log in a file, and the CLI run to completion.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace poscache::test {

using namespace std::chrono_literals;

// A scratch directory for config files and logs, removed afterwards.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/poscache_daemon_XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  [[nodiscard]] std::string file(const std::string& name, const std::string& content) const {
    const std::string p = path_ + "/" + name;
    std::ofstream(p) << content;
    return p;
  }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// `poscache-writer ARGS` with environment `env` ("K=V K2=V2"), run to completion.
inline test::CliRun writer_cli(const std::string& args, const std::string& env = "") {
  return test::run_cli("env " + env + " " + std::string(POSCACHE_WRITER_BIN) + " " + args);
}

// The effective settings, as --print-config prints them (TOML): "table.key" → value as printed;
// each [[namespace]] table counts as one "namespace" entry (its name), its keys as
// "namespace.key".
inline std::multimap<std::string, std::string> settings(const test::CliRun& r) {
  std::multimap<std::string, std::string> m;
  std::string table;
  std::size_t start = 0;
  while (start < r.out.size()) {
    const std::size_t end = r.out.find('\n', start);
    const std::string line = r.out.substr(start, end - start);
    if (line == "[[namespace]]") {
      table = "namespace";
    } else if (line.size() > 2 && line.front() == '[' && line.back() == ']') {
      table = line.substr(1, line.size() - 2);
    } else if (const auto eq = line.find(" = ");
               eq != std::string::npos && line.front() != '#' && line.front() != ' ') {
      const std::string key = line.substr(0, eq), value = line.substr(eq + 3);
      if (table == "namespace" && key == "name") m.emplace("namespace", value);
      m.emplace(table.empty() ? key : table + "." + key, value);
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return m;
}
inline std::string setting(const test::CliRun& r, const std::string& key) {
  const auto m = settings(r);
  const auto it = m.find(key);
  return it == m.end() ? "(missing: " + r.out + ")" : it->second;
}

// A daemon running in the background, its output going to a file.
class Daemon {
 public:
  Daemon(const std::string& args, const std::vector<std::pair<std::string, std::string>>& env = {})
      : log_(dir_.path() + "/writer.log") {
    pid_ = test::fork_child([&] {
      const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
      const std::string cmd = "exec " + std::string(POSCACHE_WRITER_BIN) + " " + args;
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      return 127;
    });
  }
  ~Daemon() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  [[nodiscard]] std::string log() const {
    std::ifstream f(log_);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
  }
  // Polls the log for `text` (generous deadline: a loaded machine, a sanitizer build).
  bool wait_for(const std::string& text, std::chrono::seconds limit = 60s) const {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (log().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }
  void signal(int sig) const { ::kill(pid_, sig); }
  int wait() {
    const int code = test::wait_child(pid_);
    pid_ = -1;
    return code;
  }
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  TempDir dir_;
  std::string log_;
  pid_t pid_ = -1;
};

inline std::string seg_flag(const test::ScratchSegment& seg) {
  return "-s " + seg.name();
}

}  // namespace poscache::test
