import StreamBusMetaServer
import Testing

struct ReadinessTests {
  @Test func noLeaderIsNotReady() {
    let readiness = Readiness.evaluate(
      nodeID: 1, leaderID: nil, appliedIndex: 10, leaderCommitIndex: 10)
    #expect(!readiness.isReady)
    #expect(readiness.reason == "no leader known")
  }

  @Test func lagBehindTheLeadersCommitIsNotReady() {
    let readiness = Readiness.evaluate(
      nodeID: 2, leaderID: 1, appliedIndex: 9, leaderCommitIndex: 10)
    #expect(!readiness.isReady)
    #expect(readiness.reason.contains("applied index 9 behind the commit index 10"))
  }

  @Test func caughtUpWithAKnownLeaderIsReady() {
    let follower = Readiness.evaluate(
      nodeID: 2, leaderID: 1, appliedIndex: 10, leaderCommitIndex: 10)
    #expect(follower.isReady)
    #expect(follower.reason.hasPrefix("leader 1"))
    let leader = Readiness.evaluate(
      nodeID: 1, leaderID: 1, appliedIndex: 12, leaderCommitIndex: 12)
    #expect(leader.isReady)
    #expect(leader.reason.hasPrefix("this node leads"))
  }
}
