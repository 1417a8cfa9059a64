// Subcommands of the `hansa` admin binary. Each *_command.cc registers itself with one
// HANSA_REGISTER_COMMAND(fn) where fn(CLI::App& root) adds a subcommand and its callback.
// A callback reports failure by throwing CLI::RuntimeError(exit_code) after printing a clear
// message to stderr; main() turns that into the process exit code.
#pragma once

#include <functional>
#include <vector>

#include "CLI/CLI.hpp"

namespace hansa::tools {

using CommandFn = std::function<void(CLI::App&)>;

std::vector<CommandFn>& Commands();

struct CommandRegistrar {
  explicit CommandRegistrar(CommandFn fn) { Commands().push_back(std::move(fn)); }
};

}  // namespace hansa::tools

#define HANSA_COMMAND_CONCAT_INNER_(a, b) a##b
#define HANSA_COMMAND_CONCAT_(a, b) HANSA_COMMAND_CONCAT_INNER_(a, b)
#define HANSA_REGISTER_COMMAND(fn) \
  static ::hansa::tools::CommandRegistrar HANSA_COMMAND_CONCAT_(hansa_command_, __LINE__)(fn)
