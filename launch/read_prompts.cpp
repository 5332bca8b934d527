#include "launch/read_prompts.h"

#include "engine/common/error.h"
#include "engine/common/log.h"

namespace tlm {

std::vector<PromptRecord> read_all_prompts(const std::string& path, SkipReport* skips) {
  PromptSet set = read_prompt_file(path);
  for (const SkippedRecord& s : set.skips.records)
    log_warn(str_cat(s.source, ":", s.line, ": skipped record: ", s.reason));
  if (skips) *skips = set.skips;
  return std::move(set.records);
}

}  // namespace tlm
