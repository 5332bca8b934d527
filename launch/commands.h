// The subcommands of `tlm`. Each parses its own argv (cxxopts) and returns the exit code.
#pragma once

namespace tlm {

int run_generate(int argc, char** argv);
int run_score(int argc, char** argv);
int run_adapt(int argc, char** argv);
int run_eval(int argc, char** argv);
int run_scalenet_train(int argc, char** argv);
int run_serve(int argc, char** argv);

}  // namespace tlm
