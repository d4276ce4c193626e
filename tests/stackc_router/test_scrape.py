"""Reading engines' Prometheus text: the load and KV-cache capacity series, in both engines' shapes."""

from __future__ import annotations

import pytest

from stackc_router.scrape import CHARS_PER_TOKEN, capacity_chars, metric_value

VLLM = """\
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",num_gpu_blocks="27000"} 1.0
vllm:num_requests_waiting{engine="0",model_name="org/a"} 3.0
"""
SGLANG = """\
# TYPE sglang:max_total_num_tokens gauge
sglang:max_total_num_tokens{model_name="org/a",tp_rank="0"} 431000.0 1712345678000
sglang:max_total_num_tokens_extra 5
"""


def test_vllm_capacity_is_block_size_times_blocks() -> None:
    assert capacity_chars(VLLM, "vllm:cache_config_info", ("block_size", "num_gpu_blocks")) == 16 * 27000 * CHARS_PER_TOKEN


def test_sglang_capacity_is_the_value_and_a_longer_name_is_another_series() -> None:
    assert capacity_chars(SGLANG, "sglang:max_total_num_tokens") == 431000 * CHARS_PER_TOKEN


@pytest.mark.parametrize("labels", [
    'num_gpu_blocks="100", block_size="32"',  # any order, spaces
    'note="a \\"quoted\\" } value, here",block_size="32",num_gpu_blocks="100",',  # escapes, braces, trailing comma
])
def test_labels_are_read_as_the_format_allows(labels: str) -> None:
    text = f"vllm:cache_config_info{{{labels}}} 1\n"
    assert capacity_chars(text, "vllm:cache_config_info", ("block_size", "num_gpu_blocks")) == 3200 * CHARS_PER_TOKEN


@pytest.mark.parametrize("text", [
    "",  # not published
    'vllm:cache_config_info{block_size="16",num_gpu_blocks="None"} 1\n',  # before profiling
    'vllm:cache_config_info{block_size="16"} 1\n',  # a label missing
    'vllm:cache_config_info{block_size="16",num_gpu_blocks="10" 1\n',  # malformed
    'vllm:cache_config_info{block_size="16",num_gpu_blocks="10"} NaN\n',
])
def test_an_unreadable_capacity_is_unknown_not_zero(text: str) -> None:
    assert capacity_chars(text, "vllm:cache_config_info", ("block_size", "num_gpu_blocks")) is None


def test_metric_value_sums_series_and_selects_by_labels() -> None:
    text = ('nv_trt_llm_request_metrics{request_type="waiting",model="m"} 4\n'
            'nv_trt_llm_request_metrics{model="m",request_type="active"} 2\n')
    assert metric_value(text, 'nv_trt_llm_request_metrics{request_type="waiting"}') == 4.0
    assert metric_value(text, "nv_trt_llm_request_metrics") == 6.0
    assert metric_value(VLLM, "vllm:num_requests_waiting") == 3.0
    assert metric_value(VLLM, "vllm:num_requests_running") == 0.0
