"""Instruction data: load any supported format into ``Example(id, task, messages)`` and write a
selection back in the input's own format."""
from instruct_select.data.example import Example
from instruct_select.data.loading import LoadedData, load_examples
from instruct_select.data.writing import write_examples_jsonl, write_records

__all__ = ["Example", "LoadedData", "load_examples", "write_examples_jsonl", "write_records"]
