// A redis-server for a benchmark: started on a free port in a temporary directory without
// persistence (posix_spawn, not fork: a fork would copy the benchmark's page tables, and a timed
// thread would then take copy-on-write faults on its heap), pinned with taskset to `cpu`.
#pragma once

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace poscache::bench {

inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

struct Server {
  int cpu = 1;
  int port = 0;
  std::string dir;
  std::string unixsocket;  // also listen on this unix socket ("" = TCP only)
  pid_t pid = -1;
  void start() {
    const std::string cpu_text = std::to_string(cpu);
    const std::string p = std::to_string(port), log = dir + "/redis.log";
    std::vector<std::string> args = {"taskset",      "-c", cpu_text,    "redis-server",
                                     "--port",       p,    "--bind",    "127.0.0.1",
                                     "--dir",        dir,  "--save",    "",
                                     "--appendonly", "no", "--logfile", log};
    if (!unixsocket.empty()) {
      args.insert(args.end(), {"--unixsocket", unixsocket, "--unixsocketperm", "700"});
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (::posix_spawnp(&pid, "taskset", nullptr, nullptr, argv.data(), environ) != 0) {
      std::fprintf(stderr, "cannot start redis-server (taskset, redis-server on PATH?)\n");
      std::exit(1);
    }
    for (int i = 0; i < 500; ++i) {
      redisContext* c = redisConnect("127.0.0.1", port);
      const bool up = c != nullptr && c->err == 0;
      if (c != nullptr) redisFree(c);
      if (up) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::fprintf(stderr, "redis-server did not start\n");
    std::exit(1);
  }
  void stop(int sig) {
    if (pid <= 0) return;
    ::kill(pid, sig);
    ::waitpid(pid, nullptr, 0);
    pid = -1;
  }
};

}  // namespace poscache::bench
