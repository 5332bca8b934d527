#include "launch/read_prompts.h"

#include <spdlog/spdlog.h>

namespace tlm {

std::vector<PromptRecord> read_all_prompts(const std::string& path, SkipReport* skips) {
  PromptStream stream(path);
  std::vector<PromptRecord> all;
  for (auto chunk = stream.next(1024); !chunk.empty(); chunk = stream.next(1024))
    all.insert(all.end(), chunk.begin(), chunk.end());
  for (const SkippedRecord& s : stream.skips().records)
    spdlog::warn("{}:{}: skipped record: {}", s.source, s.line, s.reason);
  if (skips) *skips = stream.skips();
  return all;
}

}  // namespace tlm
