# Copyright 2026 The liteseg_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
Read and write rosbag2 bags (MCAP and sqlite3) with ``rosbags``: no ROS install, no rclpy.

A bag is opened by path: a rosbag2 directory (with ``metadata.yaml``) or a bare ``.mcap`` /
``.db3`` file. :class:`BagReader` lists the topics with their types and message counts and
yields :class:`BagMessage` records (log timestamp, topic, type, serialised CDR bytes) of
chosen topics in log-time order; :meth:`BagReader.deserialize` turns the bytes into a
``rosbags`` message object, which ``liteseg_ros.image_codecs.decode_image`` /
``decode_compressed`` / ``decode_mask`` read directly (``data`` is a zero-copy numpy view of
the bytes).

:class:`BagWriter` writes a new rosbag2 directory (format version 8: readable by ``ros2 bag``
of Iron, Jazzy and Kilted, and by ``rosbags``) in either storage.

Messages are (de)serialised with the ``rosbags`` typestore of ROS 2 Jazzy
(``Stores.ROS2_JAZZY``). ``sensor_msgs/Image`` and ``CompressedImage`` have had the same
definition (and CDR layout) in every ROS 2 release, so bags from Humble to Kilted read the
same; the output bags carry Jazzy's message definitions and type hashes.

``stamp_of`` / ``with_stamp`` read and replace the header stamp of a serialised message whose
first field is a ``std_msgs/Header`` (Image, CompressedImage, ...) without deserialising it.
"""

from dataclasses import dataclass
import functools
from pathlib import Path
import struct

import numpy as np

__all__ = [
    'BagError', 'BagMessage', 'BagReader', 'BagWriter', 'COMPRESSED_TYPE', 'IMAGE_TYPE',
    'OUTPUT_TYPES', 'STORAGES', 'TYPESTORE', 'bag_storage', 'compressed_message',
    'describe_topics', 'deserialize', 'header', 'image_message', 'stamp_of', 'stamp_to_ns',
    'with_stamp',
]

#: Storage plugins this module reads and writes.
STORAGES = ('mcap', 'sqlite3')
#: Name of the rosbags typestore used for (de)serialisation.
TYPESTORE = 'ROS2_JAZZY'
IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
#: Message type of each segmentation output (names as ``inference.outputs.OUTPUTS``).
OUTPUT_TYPES = {
    'mask': IMAGE_TYPE, 'mask/compressed': COMPRESSED_TYPE, 'color': IMAGE_TYPE,
    'overlay': IMAGE_TYPE, 'drivable_area': IMAGE_TYPE, 'confidence': IMAGE_TYPE,
}
#: rosbag2 metadata version written (8: Iron and later read it).
BAG_VERSION = 8

_SUFFIX_STORAGE = {'.mcap': 'mcap', '.db3': 'sqlite3'}


class BagError(ValueError):
    """A bag that cannot be used as asked; the text names the bag, the topic and what to do."""


@dataclass
class BagMessage:
    """One serialised message of a bag."""

    timestamp: int
    topic: str
    msgtype: str
    raw: object  # bytes or memoryview of CDR data


@functools.lru_cache(maxsize=None)
def typestore():
    """Return the (cached) rosbags typestore used for every message (ROS 2 Jazzy)."""
    from rosbags.typesys import get_typestore, Stores

    return get_typestore(getattr(Stores, TYPESTORE))


def _rosbags():
    try:
        import rosbags.rosbag2 as rosbag2
    except ImportError as exc:
        raise BagError(f'reading and writing bags needs the rosbags package ({exc}); install '
                       'it with: pip install rosbags') from None
    return rosbag2


def bag_storage(path):
    """
    Return the storage ('mcap' or 'sqlite3') of the bag at ``path``.

    :raises BagError: no bag there, or a storage other than mcap/sqlite3.
    """
    path = Path(path)
    if path.is_dir():
        meta = path / 'metadata.yaml'
        if meta.is_file():
            import yaml

            try:
                info = yaml.safe_load(meta.read_text())['rosbag2_bagfile_information']
                storage = str(info['storage_identifier'])
            except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
                raise BagError(f'{meta}: not a readable rosbag2 metadata file ({exc})') from None
        else:
            suffixes = {p.suffix for p in path.iterdir()} & set(_SUFFIX_STORAGE)
            if len(suffixes) != 1:
                raise BagError(f'{path}: not a rosbag2 bag (no metadata.yaml and no single '
                               '.mcap or .db3 storage file in it)')
            storage = _SUFFIX_STORAGE[suffixes.pop()]
    elif path.is_file():
        storage = _SUFFIX_STORAGE.get(path.suffix)
        if storage is None:
            raise BagError(f'{path}: not a rosbag2 bag: expected a bag directory, a .mcap or a '
                           f'.db3 file, got a {path.suffix or "suffix-less"} file')
    else:
        raise BagError(f'{path}: no such bag (expected a rosbag2 directory, .mcap or .db3 file)')
    if storage not in STORAGES:
        raise BagError(f'{path}: storage {storage!r} is not supported; supported: '
                       f'{", ".join(STORAGES)}')
    return storage


def describe_topics(topics):
    """Return one indented line per topic: name, type and message count."""
    if not topics:
        return '  (the bag has no topics)'
    width = max(len(t) for t in topics)
    return '\n'.join(f'  {name:<{width}}  {msgtype}  ({count} messages)'
                     for name, (msgtype, count) in sorted(topics.items()))


class BagReader:
    """
    A rosbag2 bag opened for reading (MCAP or sqlite3, directory or bare storage file).

    ``topics`` maps topic name to (message type, message count). Use as a context manager or
    call :meth:`close`.
    """

    def __init__(self, path):
        """Open the bag at ``path``; raise BagError naming the path if it cannot be read."""
        self.path = Path(path)
        self.storage = bag_storage(self.path)
        rosbag2 = _rosbags()
        reader = rosbag2.Reader(self.path)
        try:
            reader.open()
        except (rosbag2.ReaderError, OSError, ValueError, KeyError) as exc:
            raise BagError(f'{self.path}: cannot open the bag: {exc}') from None
        self._reader = reader
        self.topics = {}
        for topic, info in reader.topics.items():
            types = sorted({c.msgtype for c in info.connections})
            self.topics[topic] = (' | '.join(types), int(info.msgcount))
        self._connections = {}
        for connection in reader.connections:
            self._connections.setdefault(connection.topic, []).append(connection)

    def __enter__(self):
        """Return self."""
        return self

    def __exit__(self, *exc):
        """Close the bag."""
        self.close()
        return False

    def close(self):
        """Close the bag (idempotent)."""
        if self._reader is not None:
            try:
                self._reader.close()
            finally:
                self._reader = None

    def check_topics(self, topics, what='topic'):
        """
        Raise BagError unless every topic of ``topics`` is in the bag.

        The message names the missing topics and lists every topic of the bag with its type.
        """
        missing = [t for t in topics if t not in self.topics]
        if missing:
            raise BagError(
                f'{self.path}: no {what} {", ".join(missing)} in this bag; it has:\n'
                f'{describe_topics(self.topics)}')

    def image_and_label_topics(self):
        """
        Return ([image topic], [label topic]) when the bag has exactly one camera.

        Label topics are ``sensor_msgs/msg/Image`` topics whose first message is mono8 (class
        ids, as ``liteseg dataset-to-bag`` writes them); image topics are the other Image and
        every CompressedImage topic. A bag with one image topic and at most one label topic
        (or a single mono8 topic and nothing else: a mono camera) is unambiguous.

        :raises BagError: listing every image-like topic with its type and encoding, when the
            choice is ambiguous or there is no image topic.
        """
        found = {}
        for topic, (msgtype, _count) in sorted(self.topics.items()):
            if msgtype == IMAGE_TYPE:
                first = next(self.messages([topic]), None)
                found[topic] = (msgtype, deserialize(first).encoding if first else '')
            elif msgtype == COMPRESSED_TYPE:
                found[topic] = (msgtype, 'compressed')
        labels = [t for t, (kind, enc) in found.items() if kind == IMAGE_TYPE and enc == 'mono8']
        images = [t for t in found if t not in labels]
        if not images and len(labels) == 1:
            return labels, []
        if len(images) == 1 and len(labels) <= 1:
            return images, labels
        listed = '\n'.join(f'  {t}  {kind}  ({enc})' for t, (kind, enc) in found.items())
        raise BagError(
            f'{self.path}: cannot pick the image and label topics: found {len(images)} image '
            f'topic(s) and {len(labels)} mono8 label topic(s), expected one image topic and at '
            f'most one label topic; name them with --image-topic and --label-topic. '
            f'Image topics of the bag:\n{listed or "  (none)"}')

    def count(self, topics):
        """Return the number of messages of ``topics``."""
        return sum(self.topics[t][1] for t in topics if t in self.topics)

    def messages(self, topics):
        """Yield BagMessage records of ``topics`` in log-time order."""
        connections = [c for t in topics for c in self._connections.get(t, ())]
        if not connections:
            return
        for connection, timestamp, raw in self._reader.messages(connections):
            yield BagMessage(int(timestamp), connection.topic, connection.msgtype, raw)

    def deserialize(self, message):
        """Return the rosbags message object of a BagMessage (see :func:`deserialize`)."""
        return deserialize(message)

    def read(self, topics):
        """
        Yield (log timestamp, topic, rosbags message) of ``topics`` in log-time order.

        :raises BagError: at the first message that does not deserialise (use
            :meth:`messages` and :meth:`deserialize` to skip such messages instead).
        """
        for message in self.messages(topics):
            yield message.timestamp, message.topic, deserialize(message)


def deserialize(message):
    """
    Return the rosbags message object of a BagMessage.

    :raises BagError: the type is unknown to the typestore or the bytes do not parse.
    """
    store = typestore()
    if message.msgtype not in store.types:
        raise BagError(f'message type {message.msgtype} is unknown')
    try:
        return store.deserialize_cdr(message.raw, message.msgtype)
    except Exception as exc:  # rosbags raises assorted errors for truncated CDR
        raise BagError(f'cannot deserialise {message.msgtype}: {type(exc).__name__}: '
                       f'{exc}') from None


# ---------------------------------------------------------------------------------------------
# Header stamps in serialised messages.

def _stamp_format(raw):
    kind = bytes(raw[:2])
    if len(raw) < 12 or kind not in (b'\x00\x00', b'\x00\x01'):
        raise BagError('not a CDR message with a std_msgs/Header first (%d bytes, encapsulation '
                       '%s)' % (len(raw), kind.hex()))
    return '<iI' if kind == b'\x00\x01' else '>iI'


def stamp_of(raw):
    """Return the header stamp (sec, nanosec) of a serialised message starting with a Header."""
    return struct.unpack_from(_stamp_format(raw), raw, 4)


def with_stamp(raw, sec, nanosec):
    """Return a copy of serialised message ``raw`` (Header first) with its stamp replaced."""
    fmt = _stamp_format(raw)
    out = bytearray(raw)
    struct.pack_into(fmt, out, 4, int(sec), int(nanosec))
    return bytes(out)


def stamp_to_ns(stamp):
    """Return nanoseconds of a (sec, nanosec) pair or a message stamp."""
    if isinstance(stamp, tuple):
        sec, nanosec = stamp
    else:
        sec, nanosec = stamp.sec, stamp.nanosec
    return int(sec) * 1_000_000_000 + int(nanosec)


# ---------------------------------------------------------------------------------------------
# Message construction (rosbags objects).

def header(sec, nanosec, frame_id=''):
    """Return a rosbags ``std_msgs/Header``."""
    types = typestore().types
    stamp = types['builtin_interfaces/msg/Time'](sec=int(sec), nanosec=int(nanosec))
    return types['std_msgs/msg/Header'](stamp=stamp, frame_id=str(frame_id))


def image_message(array, encoding, msg_header):
    """
    Return a rosbags ``sensor_msgs/Image`` holding ``array`` as is.

    ``array`` is HxW uint8 for mono8/8UC1, HxWx3 uint8 for rgb8/bgr8; ``step`` is width times
    channels and ``data`` a flat view of the (contiguous) array.
    """
    array = np.ascontiguousarray(array)
    channels = 1 if array.ndim == 2 else array.shape[2]
    expected = {'mono8': 1, '8UC1': 1, 'rgb8': 3, 'bgr8': 3, '8UC3': 3}.get(encoding)
    if array.dtype != np.uint8 or expected != channels or array.ndim not in (2, 3):
        raise ValueError(f'image_message: encoding {encoding!r} needs a uint8 array with '
                         f'{expected} channel(s), got {array.dtype} {array.shape}')
    height, width = array.shape[:2]
    return typestore().types[IMAGE_TYPE](
        header=msg_header, height=height, width=width, encoding=encoding, is_bigendian=0,
        step=width * channels, data=array.reshape(-1))


def compressed_message(data, fmt, msg_header):
    """Return a rosbags ``sensor_msgs/CompressedImage`` with ``data`` (bytes or uint8 array)."""
    if not isinstance(data, np.ndarray):
        data = np.frombuffer(data, np.uint8)
    return typestore().types[COMPRESSED_TYPE](header=msg_header, format=fmt,
                                              data=data.reshape(-1))


class BagWriter:
    """
    A new rosbag2 directory (``mcap`` or ``sqlite3``), written message by message.

    Topics are added on first write (or with :meth:`add_topic`). ``close`` finishes the bag
    (index, metadata.yaml); as a context manager it closes on any exit, KeyboardInterrupt
    included, so whatever was written stays a readable bag.
    """

    def __init__(self, path, storage='mcap'):
        """Create the bag directory ``path`` (which must not exist)."""
        if storage not in STORAGES:
            raise BagError(f'storage {storage!r} is not supported; use one of '
                           f'{", ".join(STORAGES)}')
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f'{self.path} exists already; remove it or write elsewhere')
        rosbag2 = _rosbags()
        plugin = rosbag2.StoragePlugin.MCAP if storage == 'mcap' else \
            rosbag2.StoragePlugin.SQLITE3
        self.storage = storage
        self._writer = rosbag2.Writer(self.path, version=BAG_VERSION, storage_plugin=plugin)
        self._writer.open()
        self._connections = {}
        self.counts = {}

    def __enter__(self):
        """Return self."""
        return self

    def __exit__(self, *exc):
        """Close the bag, whatever happened."""
        self.close()
        return False

    def add_topic(self, topic, msgtype):
        """Register ``topic`` with ``msgtype`` (idempotent)."""
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=typestore())
            self.counts[topic] = 0
        return self._connections[topic]

    def write(self, topic, timestamp, msg):
        """Serialise rosbags message ``msg`` and write it at ``timestamp`` (ns)."""
        msgtype = msg.__msgtype__
        raw = typestore().serialize_cdr(msg, msgtype)
        self.write_raw(topic, timestamp, raw, msgtype)

    def write_raw(self, topic, timestamp, raw, msgtype):
        """Write already serialised CDR bytes at ``timestamp`` (ns)."""
        connection = self.add_topic(topic, msgtype)
        self._writer.write(connection, int(timestamp), raw)
        self.counts[topic] += 1

    def close(self):
        """Finish the bag (idempotent)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
