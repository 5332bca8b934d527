// The tick rank 0 sends its TP group: every field survives the JSON round trip (what the
// other ranks apply is what rank 0 decided), and alone share_tick is the identity. The
// exchange itself runs under mpirun in tests/launch/test_serve_mpi.py.
#include <gtest/gtest.h>

#include "engine/serve/serve_tick.h"

namespace tlm {
namespace {

TEST(ServeTick, JsonRoundTripKeepsEveryField) {
  ServeTick t;
  ServeTick::Arrival a;
  a.id = 7;
  a.job.ref = parse_model_ref("tlm/agronomy");
  a.job.prompt = {1, 2, 300000};
  a.job.max_tokens = 12;
  a.job.sampling = {0.7, 0.9, 18446744073709551615ull};
  t.arrived.push_back(a);
  ServeTick::Arrival b;
  b.id = 8;
  b.job.ref = parse_model_ref("base");
  b.job.prompt = {5};
  t.arrived.push_back(b);
  t.cancelled = {3, 5};
  t.calls.push_back({"export", {{"id", "tlm"}, {"dir", "/tmp/x"}}});
  t.stopping = true;
  t.checkpoint = true;
  const ServeTick r = tick_from_json(nlohmann::json::parse(tick_to_json(t).dump()));
  ASSERT_EQ(r.arrived.size(), 2u);
  EXPECT_EQ(r.arrived[0].id, 7u);
  EXPECT_EQ(r.arrived[0].job.ref.id(), "tlm/agronomy");
  EXPECT_EQ(r.arrived[0].job.prompt, a.job.prompt);
  EXPECT_EQ(r.arrived[0].job.max_tokens, 12);
  EXPECT_EQ(r.arrived[0].job.sampling.temperature, 0.7);
  EXPECT_EQ(r.arrived[0].job.sampling.top_p, 0.9);
  EXPECT_EQ(r.arrived[0].job.sampling.seed, 18446744073709551615ull);
  EXPECT_EQ(r.arrived[1].job.ref.kind, ModelRef::Base);
  EXPECT_EQ(r.cancelled, t.cancelled);
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "export");
  EXPECT_EQ(r.calls[0].arg, t.calls[0].arg);
  EXPECT_TRUE(r.stopping && r.checkpoint);
  EXPECT_FALSE(r.exit);
}

TEST(ServeTick, AloneTheTickStaysAsItIs) {
  ServeTick t;
  t.exit = true;
  t.cancelled = {1};
  const ServeTick r = share_tick(t, make_single_process_communicator());
  EXPECT_TRUE(r.exit);
  EXPECT_EQ(r.cancelled, t.cancelled);
  EXPECT_TRUE(share_tick(t, nullptr).exit);
}

}  // namespace
}  // namespace tlm
