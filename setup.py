"""official-tfx: the TensorFlow official models as production TFX pipelines."""

import setuptools

setuptools.setup(
    name='official-tfx',
    version='0.1.0',
    description='TensorFlow official models (census wide & deep, ...) as TFX pipelines',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.9,<3.11',
    packages=setuptools.find_packages(include=['pipelines*', 'components*', 'preprocessing*',
                                               'model_fns*', 'beam_runner*']),
    package_data={'preprocessing': ['schemas/*.pbtxt', 'checksums/*.txt'],
                  # The run report's jinja2 template (pipelines.report).
                  'pipelines': ['templates/*.j2']},
    # The exact, tested versions are pinned in requirements/base.lock; these are the ranges
    # the code is written for.
    install_requires=[
        'tfx==1.16.0',
        'tensorflow>=2.16,<2.17',
        'tf-keras>=2.16,<2.17',
        'apache-beam[gcp]==2.61.0',
        'tensorflow-transform==1.16.0',
        'tensorflow-data-validation==1.16.1',
        'tensorflow-model-analysis==0.47.1',
        'ml-metadata==1.16.0',
        'tensorflow-decision-forests==1.9.2',
        'absl-py',
        'jinja2',  # the run report's template (pipelines.report)
        'rich',  # the live progress display on a terminal (pipelines.progress)
        'tensorflow-serving-api>=2.16,<2.17',  # TF Serving's request protos (serving check)
    ],
    extras_require={
        # Orchestrators beside the embedded LocalDagRunner. Plain apache-airflow: tfx[airflow]
        # asks for apache-airflow[mysql], whose mysqlclient build needs the MySQL headers.
        # psycopg2: Airflow's database on PostgreSQL, for the LocalExecutor (README).
        'airflow': ['apache-airflow==2.11.0', 'psycopg2-binary'],
        'kfp': ['kfp==2.5.0', 'kfp-pipeline-spec>=0.2.2,<0.3'],
        # Text models: in-graph tokenizers (BERT, WMT), SentencePiece training and BLEU (WMT).
        'text': ['tensorflow-text==2.16.1', 'sentencepiece==0.2.0', 'sacrebleu==2.6.0'],
        'test': ['pytest'],
    },
    entry_points={'console_scripts': ['official-tfx=pipelines.cli:entry_point']},
)
