"""A Scalable front answers a DIRECT Enqueue with the result bytes that came off the Redis bus,
undecoded (front/services.py): the client must get exactly the bytes the full encode gives, and
the one field the front reads (the job id) must be the decoder's."""

from __future__ import annotations

import random

import pytest

from jobworkerp.front.decoding import RequestCodec
from jobworkerp.proto.jobworkerp import data
from jobworkerp.proto.jobworkerp import service as svc
from jobworkerp.wire import Encoded, encode, varint, with_message_field
from jobworkerp.wire_decode import decode, message_field
from tests.unit.test_wire import fill

SEEDS = range(40)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_passed_on_answer_is_the_fully_encoded_one(seed: int) -> None:
    rng = random.Random(seed)
    result: data.JobResult = fill(data.JobResult, rng)
    job_id = data.JobId(value=rng.randrange(1, 2**63))
    whole = encode(svc.CreateJobResponse(id=job_id, result=result))
    head = encode(svc.CreateJobResponse(id=job_id))
    passed_on = RequestCodec().encode(Encoded(with_message_field(head, 2, encode(result))), svc.CreateJobResponse)
    assert passed_on == whole
    assert decode(svc.CreateJobResponse, passed_on) == svc.CreateJobResponse(id=job_id, result=result)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_job_id_read_alone_is_the_decoded_one(seed: int) -> None:
    result: data.JobResult = fill(data.JobResult, random.Random(seed))
    payload = encode(result)
    inner = message_field(payload, 2)  # JobResult.data
    if result.data is None:
        assert inner is None
        return
    assert inner is not None and decode(data.JobResultData, inner) == result.data
    job_id = message_field(inner, 1)  # JobResultData.job_id
    if result.data.job_id is None:
        assert job_id is None
    else:
        assert job_id is not None and decode(data.JobId, job_id) == result.data.job_id


def test_what_it_cannot_read_alone_is_none() -> None:
    part = encode(data.JobId(value=7))
    twice = varint(1 << 3 | 2) + varint(len(part)) + part
    assert message_field(twice + twice, 1) is None  # twice: the parts would have to be merged
    assert message_field(twice[:-1], 1) is None  # cut short
    assert message_field(encode(data.JobResultData(worker_name="w")), 1) is None  # absent
    assert message_field(b"\x0b\x0c", 1) is None  # a group: not in these messages
