// tlm: test-time learning engine. `tlm <command> [options]`; `tlm <command> --help`.
#include <cstring>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <iostream>
#include <map>
#include <optional>
#include <string>

#include <cxxopts.hpp>

#include "dist/mpi_session.h"
#include "engine/common/error.h"
#include "engine/common/log.h"
#include "launch/commands.h"

namespace {

struct Command {
  int (*run)(int, char**);
  const char* summary;
};

const std::map<std::string, Command> kCommands = {
    {"adapt", {tlm::run_adapt, "test-time learning over a prompt stream (online or offline TLM)"}},
    {"eval", {tlm::run_eval, "ROUGE-Lsum / exact match of predictions; answer NLL with and without an adapter"}},
    {"generate", {tlm::run_generate, "answer prompts; print each prompt's input perplexity"}},
    {"score", {tlm::run_score, "input perplexity of every record of a prompt file (JSONL out)"}},
    {"serve", {tlm::run_serve, "OpenAI-compatible server that learns from its requests (per-session adapters)"}},
    {"scalenet-train", {tlm::run_scalenet_train, "train ScaleNet, the step sizes of episodic adaptation"}},
};

void usage(std::ostream& os) {
  os << "tlm: test-time learning for Llama-family LLMs\n\nusage: tlm <command> [options]\n\ncommands:\n";
  for (const auto& [name, cmd] : kCommands) os << "  " << name << std::string(16 - name.size(), ' ') << cmd.summary << "\n";
  os << "\n`tlm <command> --help` lists a command's options.\n";
}

}  // namespace

int main(int argc, char** argv) {
#ifdef __GLIBC__
  // Activations and logit chunks are freed and reallocated every step. By default glibc
  // serves blocks above a moving threshold with fresh mmaps, and gives the intra-op threads
  // arenas of their own that shrink as blocks are freed, so every step pays page faults for
  // zeroed pages (a fifth of a scoring run's time on 2 cores). One arena, blocks up to 32 MiB
  // (glibc's maximum) on the heap, and freed memory kept there for reuse.
  mallopt(M_ARENA_MAX, 1);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  auto it = kCommands.find(argv[1]);
  if (it == kCommands.end()) {
    std::cerr << "tlm: unknown command '" << argv[1] << "'\n\n";
    usage(std::cerr);
    return 2;
  }
  // Under mpirun/srun every rank runs the same command; MPI lives for the whole command.
  std::optional<tlm::MpiSession> mpi;
  if (tlm::launched_as_mpi_rank()) mpi.emplace(&argc, &argv);
  const bool many_ranks = mpi && mpi->world_size() > 1;
  try {
    return it->second.run(argc - 1, argv + 1);
  } catch (const cxxopts::exceptions::exception& e) {
    if (many_ranks) tlm::abort_job(std::string("tlm ") + argv[1] + ": " + e.what());
    std::cerr << "tlm " << argv[1] << ": " << e.what() << " (see tlm " << argv[1] << " --help)\n";
    return 2;
  } catch (const std::exception& e) {
    // A rank that fails alone would leave its peers waiting in a collective: end them all.
    if (many_ranks) tlm::abort_job(tlm::str_cat("rank ", tlm::mpi_world_rank(), ": ", e.what()));
    tlm::log_error(e.what());
    return 1;
  }
}
