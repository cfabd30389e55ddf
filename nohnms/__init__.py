"""NOH-NMS (Zhou et al., "NOH-NMS: Improving Pedestrian Detection by Nearby Objects Hallucination", ACM MM 2020):
a Faster R-CNN FPN pedestrian detector with the Nearby Objects Hallucinator, trained and evaluated on CrowdHuman
(``docs/nohnms.md``)."""
