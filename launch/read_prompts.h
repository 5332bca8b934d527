// Prompts for generate/score from a file (any format tlm::PromptStream reads), logging every
// skipped record with its file, line and reason.
#pragma once

#include <string>
#include <vector>

#include "engine/data/prompt_stream.h"

namespace tlm {

std::vector<PromptRecord> read_all_prompts(const std::string& path, SkipReport* skips);

}  // namespace tlm
