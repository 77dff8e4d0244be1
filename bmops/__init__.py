# SPDX-License-Identifier: Apache-2.0
"""bmops: Ansible automation for the Backup Management System WebUI operations manual."""

__version__ = "0.1.0"
