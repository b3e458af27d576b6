#pragma once
// Whether requests come from one client at a time or from several. Frontends note the
// connection (or stream) of every inference request; spinning waiters ask. A lone
// client sending one request after another is the case where spinning pays most (the
// next request comes right after the answer, and waking a sleeping core costs more than
// a small model), and where the client's own thread preempting a spinner is expected
// rather than a sign of an overloaded machine.
#include <cstdint>

namespace flowserve {

// `client`: any value that identifies the connection or stream for as long as it lives.
void NoteRequestFrom(uintptr_t client);
// True when every request of the last kMixedWindow came from the same client.
bool LoneClient();

}  // namespace flowserve
