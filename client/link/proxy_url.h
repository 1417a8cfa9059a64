// The outbound HTTP CONNECT proxy a site may dial the coordinator through ([network] proxy in
// site.toml): its URL's checks, kept apart from the gRPC link so that the config reader (and
// its fuzz target) need no gRPC. Pure functions; any thread.
#pragma once

#include <string>

#include "common/status/status.h"

namespace hansa {

// OK for "http://host:port" (an optional trailing "/"); InvalidArgument naming the problem
// otherwise: another scheme, no host or port, or user:password@ (refused: a password would sit
// in site.toml, and a proxy that wants one is not the single open rule a site needs).
Status ValidateProxyUrl(const std::string& url);

// The host (without IPv6 brackets) and port text of "http://host:port[/]"; false when `url` has
// not that form. ValidateProxyUrl also checks what they hold.
bool SplitProxyUrl(const std::string& url, std::string* host, std::string* port);

}  // namespace hansa
