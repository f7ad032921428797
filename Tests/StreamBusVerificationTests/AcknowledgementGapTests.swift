import Foundation
import StreamBusVerification
import Testing

struct AcknowledgementGapTests {
  @Test func gapsOfAtLeastTheMinimumBetweenConsecutiveAcksPerPartition() {
    let events: [HistoryEvent] = [
      .send("w0-0", process: "w0", partition: 0, timeUs: 0),
      .ack("w0-0", offset: 0, process: "w0", partition: 0, timeUs: 1_000),
      .ack("w0-1", offset: 1, process: "w0", partition: 0, timeUs: 100_000),
      // Exactly the minimum counts; recorded out of order on purpose.
      .ack("w0-3", offset: 3, process: "w0", partition: 0, timeUs: 900_000),
      .ack("w0-2", offset: 2, process: "w0", partition: 0, timeUs: 300_000),
      .ack("w1-0", offset: 0, process: "w1", partition: 2, timeUs: 50_000),
      .ack("w1-1", offset: 1, process: "w1", partition: 2, timeUs: 249_999),
      // Sent, never acknowledged: listed with nothing.
      .send("w1-2", process: "w1", partition: 5, timeUs: 60_000),
      .note("fault", timeUs: 70_000),
    ]
    let summaries = PartitionAcknowledgements.summarize(events, gapMinUs: 200_000)
    #expect(summaries.map(\.partition) == [0, 2, 5])
    #expect(summaries[0].acknowledged == 4)
    #expect(summaries[0].firstAckUs == 1_000)
    #expect(summaries[0].lastAckUs == 900_000)
    #expect(
      summaries[0].gaps == [
        AcknowledgementGap(fromUs: 100_000, toUs: 300_000),
        AcknowledgementGap(fromUs: 300_000, toUs: 900_000),
      ])
    #expect(summaries[1].acknowledged == 2)
    #expect(summaries[1].gaps.isEmpty)
    #expect(summaries[2].acknowledged == 0)
    #expect(summaries[2].firstAckUs == nil && summaries[2].lastAckUs == nil)
    #expect(summaries[2].gaps.isEmpty)
  }

  @Test func unixMillisecondsRoundTripThroughTheHistoryClock() {
    let startedAt = Date(timeIntervalSince1970: 1_700_000_000.25)
    let history = History(topic: "t", events: [], startedAt: startedAt)
    #expect(history.unixMilliseconds(ofUs: 0) == 1_700_000_000_250)
    #expect(history.unixMilliseconds(ofUs: 1_500_999) == 1_700_000_001_750)
    #expect(history.timeUs(ofUnixMilliseconds: 1_700_000_001_750) == 1_500_000)
  }
}
