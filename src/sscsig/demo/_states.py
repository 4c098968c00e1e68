"""Cell-state catalogue of the reference study, used by the demo-cohort simulator.

Names follow Shimagami et al., Nat Commun 2025 (doi 10.1038/s41467-025-60034-7). Marker genes are
the ones the study plotted plus canonical PBMC markers (Hao et al. 2021). Fold changes are relative to
a low background level that every marker gene has in cells outside its program.

This module is data only: the simulator turns it into counts, the default ``config/markers.yaml`` is
written independently of it (the annotation must not read the simulator's truth).
"""

from __future__ import annotations

from dataclasses import dataclass

#: lineage of every fine state (the ``parent`` used for compositional tests)
STATE_LINEAGE: dict[str, str] = {
    "CD14.Mono": "Mono",
    "CD14.EGR1": "Mono",
    "CD14.ISG": "Mono",
    "Int.Mono": "Mono",
    "CD16.Mono": "Mono",
    "cDC2": "DC",
    "pDC": "DC",
    "CD4.Naive": "CD4_T",
    "CD4.TCM": "CD4_T",
    "CD4.TEM": "CD4_T",
    "Treg": "CD4_T",
    "CD8.Naive": "CD8_T",
    "CD8.TCM": "CD8_T",
    "CD8.TEM": "CD8_T",
    "CD8.TEM_T2ISG": "CD8_T",
    "CD8.CTL": "CD8_T",
    "MAIT": "other_T",
    "gdT": "other_T",
    "NK.bright": "NK",
    "NK.dim": "NK",
    "B.Naive": "B",
    "B.Memory": "B",
    "Plasmablast": "B",
}

#: share of all PBMCs in an average healthy donor (normalised by the simulator)
BASE_SHARE: dict[str, float] = {
    "CD14.Mono": 0.150,
    "CD14.EGR1": 0.012,
    "CD14.ISG": 0.010,
    "Int.Mono": 0.015,
    "CD16.Mono": 0.025,
    "cDC2": 0.009,
    "pDC": 0.005,
    "CD4.Naive": 0.120,
    "CD4.TCM": 0.100,
    "CD4.TEM": 0.040,
    "Treg": 0.020,
    "CD8.Naive": 0.045,
    "CD8.TCM": 0.025,
    "CD8.TEM": 0.030,
    "CD8.TEM_T2ISG": 0.010,
    "CD8.CTL": 0.025,
    "MAIT": 0.020,
    "gdT": 0.020,
    "NK.bright": 0.008,
    "NK.dim": 0.090,
    "B.Naive": 0.055,
    "B.Memory": 0.030,
    "Plasmablast": 0.004,
}

#: mean UMIs per cell by lineage (monocytes are larger than lymphocytes)
LINEAGE_UMIS: dict[str, float] = {
    "Mono": 5500.0,
    "DC": 5000.0,
    "CD4_T": 3200.0,
    "CD8_T": 3400.0,
    "other_T": 3300.0,
    "NK": 3600.0,
    "B": 3800.0,
}

_T = {"CD3D": 40, "CD3E": 40, "CD3G": 30, "CD2": 25, "LCK": 25, "CD247": 20, "IL32": 20}
_NAIVE = {"CCR7": 30, "LEF1": 30, "TCF7": 30, "SELL": 25, "MAL": 20}
_CYTO = {"NKG7": 40, "GNLY": 40, "PRF1": 25, "GZMA": 25, "CST7": 20}

#: lineage-wide RNA programs: gene -> fold over background
LINEAGE_PROGRAM: dict[str, dict[str, float]] = {
    "Mono": {"LYZ": 60, "CST3": 40, "TYROBP": 40, "FCER1G": 40, "AIF1": 40, "LST1": 40,
             "CSF1R": 25, "MNDA": 30, "CD68": 25, "FCN1": 40, "CTSS": 30, "PSAP": 20},
    "DC": {"CST3": 40, "HLA-DRA": 30, "HLA-DPA1": 30, "HLA-DPB1": 30, "CD74": 15, "IRF8": 25},
    "CD4_T": {**_T, "CD4": 15, "IL7R": 20, "LTB": 20},
    "CD8_T": {**_T, "CD8A": 40, "CD8B": 40},
    "other_T": {**_T, "KLRB1": 30},
    "NK": {**_CYTO, "KLRD1": 40, "KLRF1": 35, "TYROBP": 30, "FCER1G": 25},
    "B": {"MS4A1": 50, "CD79A": 50, "CD79B": 40, "CD19": 25, "BANK1": 30, "CD74": 15,
          "HLA-DRA": 25, "IGHM": 40},
}

#: state programs on top of the lineage program
STATE_PROGRAM: dict[str, dict[str, float]] = {
    "CD14.Mono": {"CD14": 40, "S100A8": 60, "S100A9": 60, "S100A12": 40, "VCAN": 35, "PLBD1": 25},
    # EGR1 / NF-kB module of the study's CD14.EGR1 state (plus the CD14 program)
    "CD14.EGR1": {"CD14": 40, "S100A8": 50, "S100A9": 50, "S100A12": 30, "VCAN": 30,
                  "EGR1": 40, "NFKBIA": 12, "IER2": 10, "SGK1": 15, "CCR1": 15, "IL1B": 25,
                  "FOS": 12, "JUN": 10, "DUSP1": 10, "NR4A1": 20, "FOSB": 15, "JUNB": 8,
                  "IER3": 10, "TNFAIP3": 10, "CXCL8": 15},
    # type-I interferon-stimulated genes
    "CD14.ISG": {"CD14": 40, "S100A8": 50, "S100A9": 50, "VCAN": 30, "MX1": 30, "HERC5": 30,
                 "ISG15": 30, "IFI44L": 35, "IFI44": 30, "IFIT1": 35, "IFIT3": 30, "IFI6": 25,
                 "RSAD2": 35, "OAS1": 20, "IFITM3": 10, "LY6E": 15},
    "Int.Mono": {"CD14": 15, "FCGR3A": 12, "HLA-DRA": 30, "HLA-DRB1": 30, "HLA-DPA1": 25,
                 "CD74": 10, "MS4A7": 12},
    "CD16.Mono": {"FCGR3A": 50, "CDKN1C": 40, "LYPD2": 30, "MS4A7": 35, "HES4": 30,
                  "RHOC": 20, "IFITM2": 10},
    "cDC2": {"CD1C": 50, "FCER1A": 45, "CLEC10A": 45, "HLA-DQA1": 30, "HLA-DRB1": 20},
    "pDC": {"LILRA4": 60, "IL3RA": 30, "CLEC4C": 50, "IRF7": 25, "TCF4": 35, "JCHAIN": 20,
            "PLD4": 40, "GZMB": 15},
    "CD4.Naive": {**_NAIVE},
    "CD4.TCM": {"CCR7": 10, "AQP3": 20, "CD28": 10, "ITGB1": 12},
    "CD4.TEM": {"GZMK": 15, "CCL5": 10, "KLRB1": 15, "ITGB1": 15},
    "Treg": {"FOXP3": 50, "IL2RA": 30, "CTLA4": 30, "RTKN2": 30, "TIGIT": 15},
    "CD8.Naive": {**_NAIVE},
    "CD8.TCM": {"GZMK": 8, "IL7R": 15, "CCR7": 8, "GATA3": 10},
    "CD8.TEM": {"GZMK": 35, "CMC1": 25, "DUSP2": 15, "EOMES": 15, "CCL5": 20, "GATA3": 8},
    # type-II interferon (IFN-gamma-inducible) module of CD8.TEM_T2ISG
    "CD8.TEM_T2ISG": {"GZMK": 30, "CMC1": 20, "CCL5": 40, "GBP5": 35, "CXCR3": 30, "COTL1": 15,
                      "HLA-DRB1": 35, "CD74": 25, "STAT1": 15, "GBP1": 25, "IRF1": 12, "GBP2": 15,
                      "GBP4": 20, "IFNG": 15},
    "CD8.CTL": {**_CYTO, "GZMB": 40, "GZMH": 40, "FGFBP2": 30, "CCL5": 35},
    "MAIT": {"SLC4A10": 50, "ZBTB16": 30, "NCR3": 25, "TRAV1-2": 50, "KLRB1": 20, "IL7R": 20},
    "gdT": {"TRDC": 50, "TRGC1": 40, "TRGC2": 40, "KLRD1": 20, "NKG7": 15},
    "NK.bright": {"XCL1": 40, "XCL2": 35, "GZMK": 25, "SELL": 20, "NCAM1": 30},
    "NK.dim": {"FCGR3A": 35, "GZMB": 30, "FGFBP2": 30, "SPON2": 25, "PRF1": 10},
    "B.Naive": {"IGHD": 40, "TCL1A": 40, "FCER2": 30, "IL4R": 15},
    "B.Memory": {"CD27": 15, "AIM2": 20, "TNFRSF13B": 20, "IGHG1": 20, "IGHA1": 15},
    "Plasmablast": {"JCHAIN": 80, "MZB1": 60, "XBP1": 30, "IGHG1": 80, "TNFRSF17": 40,
                    "PRDM1": 20},
}

#: TotalSeq-C-like antibody panel (target name as 10x writes it) and isotype controls
PROTEINS: list[str] = [
    "CD3", "CD4", "CD8", "CD14", "CD16", "CD45RA", "CD45RO", "CD197", "CD62L", "CD27", "CD127",
    "CD25", "CD56", "CD19", "IgD", "HLA-DR", "CD11c", "CD123", "CD1c", "TCR_Va7.2", "TCR_gd",
    "CD161", "CD38", "CD183", "CD2", "CD7", "CD20", "CD86", "CD57", "CD28", "CD95", "CD45",
]
ISOTYPES: list[str] = ["Mouse_IgG1_isotype", "Mouse_IgG2a_isotype", "Mouse_IgG2b_isotype"]

#: protein levels: 0 absent, 1 low, 2 intermediate, 3 high
LINEAGE_PROTEIN: dict[str, dict[str, int]] = {
    "Mono": {"CD14": 3, "CD11c": 3, "CD4": 1, "HLA-DR": 2, "CD86": 2, "CD45": 3, "CD45RO": 1,
             "CD38": 1, "CD95": 1},
    "DC": {"HLA-DR": 3, "CD11c": 2, "CD86": 2, "CD45": 3, "CD4": 1, "CD45RA": 1},
    "CD4_T": {"CD3": 3, "CD4": 3, "CD2": 3, "CD7": 2, "CD28": 3, "CD45": 3, "CD27": 2, "CD127": 2},
    "CD8_T": {"CD3": 3, "CD8": 3, "CD2": 3, "CD7": 3, "CD45": 3, "CD27": 2, "CD28": 2},
    "other_T": {"CD3": 3, "CD2": 3, "CD7": 2, "CD161": 3, "CD45": 3, "CD45RO": 2, "CD127": 2},
    "NK": {"CD56": 2, "CD16": 2, "CD2": 2, "CD7": 3, "CD45": 3, "CD45RA": 2, "CD161": 1},
    "B": {"CD19": 3, "CD20": 3, "HLA-DR": 3, "CD45": 3, "CD45RA": 3, "CD38": 1},
}

STATE_PROTEIN: dict[str, dict[str, int]] = {
    "CD14.Mono": {"CD16": 0, "CD62L": 2},
    "CD14.EGR1": {"CD16": 0, "CD62L": 2},
    "CD14.ISG": {"CD16": 0, "CD62L": 2, "CD38": 2},
    "Int.Mono": {"CD14": 2, "CD16": 2, "HLA-DR": 3},
    "CD16.Mono": {"CD14": 1, "CD16": 3, "HLA-DR": 2},
    "cDC2": {"CD1c": 3, "CD11c": 3},
    "pDC": {"CD123": 3, "CD45RA": 2, "CD11c": 0, "CD38": 1},
    "CD4.Naive": {"CD45RA": 3, "CD197": 3, "CD62L": 3, "CD27": 3, "CD127": 2},
    "CD4.TCM": {"CD45RO": 3, "CD197": 2, "CD62L": 2, "CD27": 3, "CD127": 3, "CD95": 2},
    "CD4.TEM": {"CD45RO": 3, "CD127": 2, "CD95": 3, "CD27": 1, "CD161": 1},
    "Treg": {"CD25": 3, "CD45RO": 2, "CD127": 0, "CD95": 2},
    "CD8.Naive": {"CD45RA": 3, "CD197": 3, "CD62L": 3, "CD27": 3, "CD127": 2},
    "CD8.TCM": {"CD45RO": 3, "CD197": 2, "CD62L": 2, "CD27": 3, "CD127": 2, "CD95": 2},
    "CD8.TEM": {"CD45RO": 3, "CD95": 3, "CD27": 2},
    "CD8.TEM_T2ISG": {"CD45RO": 3, "CD95": 3, "CD27": 2, "CD183": 3, "HLA-DR": 2, "CD38": 2},
    "CD8.CTL": {"CD45RA": 3, "CD57": 3, "CD16": 1, "CD95": 2, "CD27": 0, "CD28": 0},
    "MAIT": {"TCR_Va7.2": 3, "CD8": 2, "CD161": 3},
    "gdT": {"TCR_gd": 3, "CD45RA": 2},
    "NK.bright": {"CD56": 3, "CD16": 0, "CD62L": 2, "CD127": 1},
    "NK.dim": {"CD56": 1, "CD16": 3, "CD57": 2},
    "B.Naive": {"IgD": 3, "CD27": 0},
    "B.Memory": {"IgD": 0, "CD27": 3, "CD45RA": 2},
    "Plasmablast": {"CD38": 3, "CD27": 3, "CD19": 1, "CD20": 0, "HLA-DR": 1, "CD45RA": 0},
}

#: handling stress (blood waiting warm before processing): immediate-early / NF-kB genes, the ones
#: that also define CD14.EGR1, and heat-shock genes; multiplied in every monocyte of a stressed
#: sample (DemoParams.stress_in), whatever its state
STRESS_GENES: list[str] = ["EGR1", "FOS", "FOSB", "JUN", "JUNB", "IER2", "IER3", "DUSP1", "NR4A1", "NFKBIA",
                           "TNFAIP3", "KLF6", "ZFP36", "HSPA8", "HSP90AA1", "DNAJB1", "HSPB1"]

#: genes the simulator needs in the universe besides the programs
EXTRA_GENES: list[str] = ["HBB", "HBA1", "HBA2", "PPBP", "PF4"]


def program_genes() -> list[str]:
    """All genes named by any lineage or state program of the core catalogue, sorted."""
    return catalogue("core").program_genes()


# --------------------------------------------------------------------------------------------------
# The study's ~40 fine states (``DemoParams.states = "study"``; issue 16). The core catalogue above is
# left as it is (the default demo's numbers do not move); this one splits and adds states so that a
# marker file or a reference covering the study's list can be scored against truth. Names follow the
# study (``../shared/docs/reference-study.md``): its "intermediate" and "CD16" monocytes are
# ``Int.Mono`` / ``CD16.Mono``, its "PB" is ``Plasmablast``, its "CD8.naive" is ``CD8.Naive``.

#: the extra antibodies of the study panel (TotalSeq names): cDC1, IgM for unswitched B cells, CD21 for
#: age-associated B cells, CD117 for ILCs, CD138 for plasma cells
STUDY_EXTRA_PROTEINS: list[str] = ["CD141", "IgM", "CD21", "CD117", "CD138"]

#: genes the fine states need that the core gene universe lacks (appended with a low background)
STUDY_EXTRA_GENES: list[str] = [
    "CLEC9A", "XCR1", "CADM1", "IDO1", "AXL", "SIGLEC6", "PPP1R14A", "PADI4", "MKI67", "TOP2A", "TYMS",
    "PCNA", "KIT", "TNFRSF4", "TNFRSF18", "SDC1", "FCRL5", "TBX21", "CR2", "CD83", "NFKBID", "MIR155HG",
    "EGR3", "IFI27", "SIGLEC1", "NCR1", "CD160", "KLRC1", "AREG", "SOX4", "HPGDS", "IL1R1", "TXNDC5",
    "PTPN3", "CAV1", "MYB", "FXYD2", "CCR6",
]

_ISG = {"MX1": 30, "HERC5": 30, "ISG15": 30, "IFI44L": 35, "IFI44": 30, "IFIT1": 35, "IFIT3": 30,
        "IFI6": 25, "RSAD2": 35, "OAS1": 20, "IFI27": 25, "LY6E": 15}
_PROLIF = {"MKI67": 40, "TOP2A": 40, "TYMS": 30, "PCNA": 25, "STMN1": 25, "TUBB": 15}

#: state -> (lineage, base share, RNA program, protein levels); the shares of a split state add up
#: to the core state's share
_STUDY: dict[str, tuple[str, float, dict, dict]] = {
    "CD14.VCAN": ("Mono", 0.070,
                  {"CD14": 40, "S100A8": 60, "S100A9": 60, "S100A12": 50, "VCAN": 50, "FCN1": 45,
                   "PLBD1": 8}, {"CD16": 0, "CD62L": 2}),
    "CD14.PLBD1": ("Mono", 0.050,
                   {"CD14": 40, "S100A8": 60, "S100A9": 60, "PLBD1": 50, "PADI4": 40, "VCAN": 12,
                    "S100A12": 20}, {"CD16": 0, "CD62L": 3}),
    "CD14.HLA": ("Mono", 0.030,
                 {"CD14": 35, "S100A8": 30, "S100A9": 30, "HLA-DRA": 35, "HLA-DRB1": 35,
                  "HLA-DPA1": 30, "HLA-DPB1": 30, "CD74": 15}, {"CD16": 0, "HLA-DR": 3, "CD62L": 1}),
    "CD14.EGR1": ("Mono", 0.012, STATE_PROGRAM["CD14.EGR1"], STATE_PROTEIN["CD14.EGR1"]),
    "CD14.ISG": ("Mono", 0.010, {"CD14": 40, "S100A8": 50, "S100A9": 50, "VCAN": 30, **_ISG},
                 STATE_PROTEIN["CD14.ISG"]),
    "Int.Mono": ("Mono", 0.015, STATE_PROGRAM["Int.Mono"], STATE_PROTEIN["Int.Mono"]),
    "CD16.Mono": ("Mono", 0.021, STATE_PROGRAM["CD16.Mono"], STATE_PROTEIN["CD16.Mono"]),
    "CD16.ISG": ("Mono", 0.004, {**STATE_PROGRAM["CD16.Mono"], **_ISG}, STATE_PROTEIN["CD16.Mono"]),
    "cDC1": ("DC", 0.0015, {"CLEC9A": 60, "XCR1": 45, "CADM1": 40, "IDO1": 40, "HLA-DPB1": 30},
             {"CD141": 3, "HLA-DR": 3, "CD11c": 1}),
    "cDC2": ("DC", 0.008, STATE_PROGRAM["cDC2"], STATE_PROTEIN["cDC2"]),
    "pDC": ("DC", 0.0035, STATE_PROGRAM["pDC"], STATE_PROTEIN["pDC"]),
    "pDC.ISG": ("DC", 0.0015, {**STATE_PROGRAM["pDC"], **_ISG}, STATE_PROTEIN["pDC"]),
    "ASDC": ("DC", 0.0015, {"AXL": 50, "SIGLEC6": 50, "PPP1R14A": 40, "LILRA4": 10, "CD1C": 10,
                            "IL3RA": 15}, {"CD123": 2, "CD11c": 2, "HLA-DR": 3}),
    "CD4.Naive": ("CD4_T", 0.120, STATE_PROGRAM["CD4.Naive"], STATE_PROTEIN["CD4.Naive"]),
    "CD4.TCM_1": ("CD4_T", 0.060, {"CCR7": 12, "AQP3": 25, "CD28": 12, "LTB": 25},
                  {"CD45RO": 3, "CD197": 2, "CD62L": 2, "CD27": 3, "CD127": 3, "CD95": 1}),
    "CD4.TCM_2": ("CD4_T", 0.040, {"ITGB1": 25, "ANXA1": 25, "S100A4": 25, "GPR183": 20, "CCR6": 20},
                  {"CD45RO": 3, "CD197": 1, "CD62L": 1, "CD27": 3, "CD127": 3, "CD95": 3}),
    "CD4.TEM": ("CD4_T", 0.040, STATE_PROGRAM["CD4.TEM"], STATE_PROTEIN["CD4.TEM"]),
    "CD4.CTL": ("CD4_T", 0.010, {**_CYTO, "GZMH": 35, "GZMB": 25, "CCL5": 30, "FGFBP2": 20},
                {"CD45RA": 2, "CD45RO": 1, "CD57": 3, "CD27": 0, "CD28": 0, "CD127": 0, "CD95": 3}),
    "CD4.ISG": ("CD4_T", 0.008, {**_NAIVE, **_ISG}, STATE_PROTEIN["CD4.Naive"]),
    "Treg": ("CD4_T", 0.020, STATE_PROGRAM["Treg"], STATE_PROTEIN["Treg"]),
    "CD8.Naive": ("CD8_T", 0.045, STATE_PROGRAM["CD8.Naive"], STATE_PROTEIN["CD8.Naive"]),
    "CD8.TCM": ("CD8_T", 0.015, {"GZMK": 8, "IL7R": 20, "CCR7": 10, "LTB": 20},
                STATE_PROTEIN["CD8.TCM"]),
    "CD8.TCM_GATA3": ("CD8_T", 0.010, {"GATA3": 40, "TNFRSF4": 25, "IL7R": 15, "GZMK": 10, "CCR7": 6},
                      {**STATE_PROTEIN["CD8.TCM"], "CD197": 1}),
    "CD8.TEM": ("CD8_T", 0.030, STATE_PROGRAM["CD8.TEM"], STATE_PROTEIN["CD8.TEM"]),
    "CD8.TEM_T2ISG": ("CD8_T", 0.010, STATE_PROGRAM["CD8.TEM_T2ISG"], STATE_PROTEIN["CD8.TEM_T2ISG"]),
    "CD8.CTL": ("CD8_T", 0.025, STATE_PROGRAM["CD8.CTL"], STATE_PROTEIN["CD8.CTL"]),
    "MAIT": ("other_T", 0.020, STATE_PROGRAM["MAIT"], STATE_PROTEIN["MAIT"]),
    "gdT": ("other_T", 0.020, STATE_PROGRAM["gdT"], STATE_PROTEIN["gdT"]),
    "dnT": ("other_T", 0.005, {"PTPN3": 40, "NUCB2": 30, "CAV1": 30, "MYB": 25, "FXYD2": 30, "GZMK": 10},
            {"CD45RA": 2, "CD161": 0, "CD127": 1, "CD27": 2}),
    "NK.bright": ("NK", 0.008, STATE_PROGRAM["NK.bright"], STATE_PROTEIN["NK.bright"]),
    "NK.intermediate": ("NK", 0.012, {"GZMK": 12, "XCL1": 12, "FCGR3A": 15, "GZMB": 15, "KLRC1": 35,
                                      "CD160": 30, "NCR1": 20}, {"CD56": 2, "CD16": 2, "CD57": 0}),
    "NK.dim": ("NK", 0.080, STATE_PROGRAM["NK.dim"], STATE_PROTEIN["NK.dim"]),
    "ILC": ("NK", 0.002, {"KIT": 50, "IL7R": 35, "TNFRSF4": 25, "TNFRSF18": 30, "IL1R1": 30, "HPGDS": 35,
                          "SOX4": 20, "AREG": 20},
            {"CD56": 0, "CD16": 0, "CD127": 3, "CD161": 3, "CD117": 3}),
    "Proliferating": ("NK", 0.004, {**_PROLIF}, {}),
    "B.Naive": ("B", 0.045, STATE_PROGRAM["B.Naive"], {**STATE_PROTEIN["B.Naive"], "IgM": 3, "CD21": 2}),
    "B.Naive_Activated": ("B", 0.010, {**STATE_PROGRAM["B.Naive"], "CD69": 30, "CD83": 35, "NFKBID": 30,
                                       "MIR155HG": 30, "EGR3": 25},
                          {"IgD": 3, "CD27": 0, "IgM": 3, "CD21": 2, "CD86": 2}),
    "B.Memory_pre.switched": ("B", 0.012, {"CD27": 15, "AIM2": 20, "IGHM": 60, "IGHD": 15},
                              {"IgD": 2, "IgM": 3, "CD27": 3, "CD21": 2, "CD45RA": 2}),
    "B.Memory_post.switched": ("B", 0.015, {"CD27": 15, "AIM2": 20, "TNFRSF13B": 25, "IGHG1": 30,
                                            "IGHA1": 30},
                               {"IgD": 0, "IgM": 0, "CD27": 3, "CD21": 2, "CD45RA": 2}),
    "ABC": ("B", 0.004, {"ITGAX": 40, "TBX21": 35, "FCRL5": 40, "ZEB2": 20, "IGHG1": 15},
            {"IgD": 0, "IgM": 1, "CD27": 0, "CD21": 0, "CD11c": 2}),
    "Plasmablast": ("B", 0.003, {**STATE_PROGRAM["Plasmablast"], "MKI67": 25, "TOP2A": 20},
                    STATE_PROTEIN["Plasmablast"]),
    "Plasma.cell": ("B", 0.002, {"JCHAIN": 80, "MZB1": 60, "XBP1": 35, "IGHA1": 80, "TNFRSF17": 40,
                                 "PRDM1": 25, "SDC1": 40, "TXNDC5": 30},
                    {**STATE_PROTEIN["Plasmablast"], "CD138": 3}),
}

#: the study's fine-state names this catalogue covers, in the order of ``reference-study.md``
STUDY_STATES: list[str] = list(_STUDY)


@dataclass(frozen=True)
class Catalogue:
    """The states a demo cohort is drawn from, with their programs and the antibody panel."""

    name: str
    state_lineage: dict
    base_share: dict
    state_program: dict
    state_protein: dict
    proteins: list
    extra_genes: list  # genes appended to the gene universe (the core universe has the core's)

    def program_genes(self) -> list[str]:
        """All genes named by any lineage or state program of this catalogue, sorted."""
        genes = set(EXTRA_GENES)
        for prog in (*LINEAGE_PROGRAM.values(), *self.state_program.values()):
            genes.update(prog)
        return sorted(genes)


def catalogue(name: str = "core") -> Catalogue:
    """The demo's state catalogue: ``core`` (23 states, the default demo) or ``study`` (41 states,
    the reference study's fine states with 5 extra antibodies)."""
    if name == "core":
        return Catalogue("core", STATE_LINEAGE, BASE_SHARE, STATE_PROGRAM, STATE_PROTEIN, PROTEINS, [])
    if name == "study":
        return Catalogue("study", {s: v[0] for s, v in _STUDY.items()}, {s: v[1] for s, v in _STUDY.items()},
                         {s: v[2] for s, v in _STUDY.items()}, {s: v[3] for s, v in _STUDY.items()},
                         PROTEINS + STUDY_EXTRA_PROTEINS, STUDY_EXTRA_GENES)
    raise ValueError(f"demo states: unknown catalogue {name!r} (core or study)")
