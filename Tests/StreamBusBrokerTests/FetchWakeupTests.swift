import Testing

@testable import StreamBusBroker

@Suite struct FetchWakeupTests {
  let p0 = TopicPartition(topic: "t", partition: 0)
  let p1 = TopicPartition(topic: "t", partition: 1)

  @Test func newsNamesThePartitionsSignalledSinceTheLastWait() async {
    let wakeup = FetchWakeup()
    wakeup.signal(p0)
    wakeup.signal(p1)
    let news = await wakeup.wait()
    #expect(!news.everything)
    #expect(news.partitions == [p0, p1])
    #expect(!wakeup.isSignalled)
    wakeup.signal(p1)
    wakeup.signal()
    let next = await wakeup.wait()
    #expect(next.everything)
    #expect(next.partitions == [p1])
  }

  @Test func aWaitingFetchIsResumedWithTheNews() async {
    let wakeup = FetchWakeup()
    async let news = wakeup.wait()
    // The signal may land before or after the wait parks: either way it is delivered.
    try? await Task.sleep(for: .milliseconds(20))
    wakeup.signal(p1)
    #expect(await news.partitions == [p1])
  }

  @Test func waitersAreWokenByWhatTheirKindWaitsFor() {
    let waiters = FetchWaiters(p0)
    let follower = FetchWakeup()
    let consumer = FetchWakeup()
    waiters.add(follower, isFollowerFetch: true)
    waiters.add(consumer, isFollowerFetch: false)
    waiters.signalFollowerFetches()
    #expect(follower.isSignalled)
    #expect(!consumer.isSignalled)
    waiters.signalConsumerFetches()
    #expect(consumer.isSignalled)
    waiters.remove(follower)
    waiters.remove(consumer)
    let later = FetchWakeup()
    waiters.add(later, isFollowerFetch: true)
    waiters.signalConsumerFetches()
    #expect(!later.isSignalled)
  }

  @Test func aClosedPartitionWakesEveryFetchThatRegistersAfterwards() async {
    let waiters = FetchWaiters(p0)
    let before = FetchWakeup()
    waiters.add(before, isFollowerFetch: false)
    waiters.close()
    #expect(await before.wait().partitions == [p0])
    let after = FetchWakeup()
    waiters.add(after, isFollowerFetch: true)
    #expect(await after.wait().partitions == [p0])
  }
}
