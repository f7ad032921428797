import StreamBusProtocol
import StreamBusStorage
import StreamBusTransport

/// A fetch response whose record sets may be ranges of segment files, sent without copying.
///
/// `response` carries everything but those ranges: a partition with a file range has empty
/// `records` in it, and its range in `recordsFiles` at the same topic and partition index.
struct FetchAnswer: Sendable {
  var response: FetchResponse
  var recordsFiles: [[LogFileSlice?]]

  /// The payload as parts whose concatenation is exactly
  /// `Response.fetch(response with the file ranges' bytes as records).encodePayload(...)`:
  /// the same fields in the same order, each records length taken from its range.
  func encodeParts(header: ResponseHeader, version: Int16) -> [FramePart] {
    precondition(
      ApiKey.fetch.supportedVersions?.contains(version) == true,
      "fetch version \(version) is not supported by this build")
    var parts: [FramePart] = []
    var writer = WireWriter(reservingCapacity: 256)
    header.encode(into: &writer)
    writer.writeInt32(Int32(response.topics.count))
    for (topicIndex, topic) in response.topics.enumerated() {
      writer.writeString(topic.name)
      writer.writeInt32(Int32(topic.partitions.count))
      for (partitionIndex, partition) in topic.partitions.enumerated() {
        writer.writeInt32(partition.partition)
        writer.writeInt16(partition.errorCode.rawValue)
        writer.writeInt64(partition.highWatermark)
        writer.writeInt64(partition.logStartOffset)
        writer.writeInt64(partition.logEndOffset)
        writer.writeInt32(partition.divergingEpoch.epoch)
        writer.writeInt64(partition.divergingEpoch.endOffset)
        writer.writeInt32(partition.currentLeader.leaderId)
        writer.writeInt32(partition.currentLeader.leaderEpoch)
        guard let file = recordsFiles[topicIndex][partitionIndex] else {
          writer.writeBytes(partition.records)
          continue
        }
        precondition(partition.records.isEmpty, "a partition has records in both forms")
        guard let descriptor = file.takeDescriptor() else {
          preconditionFailure("the file range of a fetch answer was already encoded")
        }
        precondition(file.byteCount <= Int(Int32.max), "record range over \(Int32.max) bytes")
        writer.writeInt32(Int32(file.byteCount))
        parts.append(.bytes(writer.bytes))
        writer = WireWriter(reservingCapacity: 256)
        parts.append(
          .file(
            FrameFileRegion(
              descriptor: descriptor, position: file.position, byteCount: file.byteCount)))
      }
    }
    if writer.count > 0 {
      parts.append(.bytes(writer.bytes))
    }
    return parts
  }
}
